"""``python -m webhook_core.cli``: the same as the ``webhook-audit`` script."""

from webhook_core.cli import main

main()
