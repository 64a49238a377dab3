"""`python -m gateway` is the `trackgate` command."""

from gateway.cli import main

raise SystemExit(main())
