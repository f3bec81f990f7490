"""Triton kernels of fused_imgproc, installed as ``fused_imgproc._kernels``: `crop_normalize` (the fused
crop/pad, value map and layout kernel) and `resample` (one pass of Pillow's 8-bit resampling), each a kernel and its
launcher. Importing them needs torch and triton; nothing here may be imported by the numpy path.
"""
