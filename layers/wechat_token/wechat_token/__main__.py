"""``python -m wechat_token``: the operators' command line (see ``wechat_token.cli``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
