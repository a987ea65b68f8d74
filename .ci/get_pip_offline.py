# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test downloads get-pip.py from ci-files.testing.ansible.com to bootstrap pip in the
virtual environments of `ansible-test sanity --venv`. That host is not reachable from machines
that only reach the package registries, so `make sanity` caches this script in its place: it
bootstraps pip with the interpreter's own ensurepip and then lets pip install what ansible-test
asked for (e.g. `pip==24.2`) from the package index, exactly as get-pip.py would.
"""
import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
# In a child process: ensurepip clears the PIP_* settings of the process it runs in.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
subprocess.check_call([sys.executable, "-m", "pip", "install", "-q"] + args)
