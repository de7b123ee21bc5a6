"""Written by the build: the torch that gradprobe._torch_bridge was compiled against."""

TORCH_VERSION: str
CXX11_ABI: int
