import sys

from infinity_train.cli import main

sys.exit(main())
