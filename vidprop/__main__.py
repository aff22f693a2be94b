import sys

from vidprop.cli import main

sys.exit(main())
