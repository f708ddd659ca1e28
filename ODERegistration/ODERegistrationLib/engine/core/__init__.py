"""The method in torch alone: fields (warp, exponential, composition, inverse), pyramid, velocity net, losses,
optimizer, device choice. Tensors in, tensors out, in normalized [-1, 1] coordinates; nothing here reads images
or knows their geometry (that is :mod:`..pipeline`), so the method can be read, tested and reused on its own.
"""
