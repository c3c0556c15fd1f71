"""`python -m twinrun.fnrunner FILE`: run a function `twinrun.check(fn)` sent in a fresh process."""

import sys


def main():
    import cloudpickle

    with open(sys.argv[1], "rb") as handle:
        fn = cloudpickle.load(handle)
    fn()


if __name__ == "__main__":
    main()
