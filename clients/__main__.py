"""`python -m clients ...` is the `matchwire` command-line tool."""

from clients.cli import main

raise SystemExit(main())
