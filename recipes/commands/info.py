"""``intelliflow info``: versions of the stack."""

from __future__ import annotations

from . import COMMAND_GROUPS
from .common import print_json


def cmd_info(args) -> int:
    """Versions of the stack, Java, threads."""
    import platform
    import shutil
    from importlib.metadata import PackageNotFoundError, version

    import torch

    import intelliflow

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    info = {
        "intelliflow": intelliflow.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": ver("torchvision"),
        "compressai": ver("compressai"),
        "sionna": ver("sionna-no-rt") or ver("sionna"),
        "transformers": ver("transformers"),
        "pycocoevalcap": ver("pycocoevalcap"),
        "java": shutil.which("java"),
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
    }
    if args.json:
        print_json(info)
    else:
        width = max(map(len, info))
        for key, value in info.items():
            shown = value if value is not None else "not found"
            print(f"{key:<{width}}  {shown}")
    return 0


@COMMAND_GROUPS.register("info")
def register(sub) -> None:
    """Add this group's commands to the main parser's sub-parsers."""
    p = sub.add_parser("info", help="print versions of torch, compressai, sionna, transformers, Java and threads")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_info)
