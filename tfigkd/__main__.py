import sys

from tfigkd.cli import main

sys.exit(main())
