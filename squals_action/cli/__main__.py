import sys

from squals_action.cli import main

sys.exit(main())
