"""``python -m wechat_token_ops``: the operators' command line (see ``wechat_token_ops.cli``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
