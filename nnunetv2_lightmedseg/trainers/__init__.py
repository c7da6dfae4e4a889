"""Folder for nnU-Net's ``nnUNet_extTrainer`` (see ``lightmedseg env``): it must hold trainer modules only.

This file only makes the folder part of the installed package (wheels ship packages); nnU-Net's search lists
the modules inside with ``pkgutil.iter_modules`` and never imports ``__init__``.
"""
