"""Triton kernels of fused_imgproc, installed as ``fused_imgproc._kernels``.

Empty until the fused crop/normalize kernel lands; nothing here may be imported by the numpy path.
"""
