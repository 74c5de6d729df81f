"""``python -m ir_d2.model_zoo``: list the model-zoo configs (``--path NAME``: print a file)."""

import argparse

from . import configs_root, get_config_file, list_configs

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m ir_d2.model_zoo", description=__doc__)
    parser.add_argument("--path", metavar="NAME", help="print the file of the zoo config NAME")
    args = parser.parse_args()
    if args.path:
        print(get_config_file(args.path))
    else:
        print(f"# {configs_root()}")
        print("\n".join(list_configs()))
