from __future__ import annotations


def main() -> int:
    raise SystemExit("imagemesh: not built yet")


if __name__ == "__main__":
    raise SystemExit(main())
