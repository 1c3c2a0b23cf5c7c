import sys

from mmgt.cli import main

sys.exit(main())
