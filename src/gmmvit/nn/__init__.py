"""The network: the masks on the attention scores (the paper's subject), the one masked attention
layer every architecture uses, its kernels, the shared blocks and the five models. Imports only
torch, timm and ``gmmvit.errors``."""
