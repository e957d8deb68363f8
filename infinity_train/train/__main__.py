import sys

from infinity_train.train.entry import main

sys.exit(main())
