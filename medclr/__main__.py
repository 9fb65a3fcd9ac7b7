"""`python -m medclr ...` (and `torchrun -m medclr train ...`) run the command line."""

from medclr.cli import main

raise SystemExit(main())
