"""
Build step that setup.cfg cannot express: ship ``sb3_polygrad_zoo.pth`` at the root of site-packages (all metadata is in
setup.cfg).

Python runs the ``import`` lines of every ``.pth`` file in site-packages at start-up; this one installs the RL Zoo hook
(``sb3_polygrad/zoo/_hook.py``) so that the unchanged ``python -m rl_zoo3.train --algo polygrad`` works. setuptools has no
option for a file at the root of site-packages, hence a build sub-command, for both install modes:

- wheel (``pip install .``): the file is written to ``build_lib``, whose root is the wheel's purelib;
- editable wheel (``pip install -e .``): setuptools maps only the packages back to the checkout and drops the rest of
  ``build_lib``, so the file also goes to the ``install`` command's ``install_lib``, which setuptools points at the root
  of the editable wheel it is building (``setuptools.command.editable_wheel``, setuptools >= 64).

Either way the file is in the wheel's RECORD, so ``pip uninstall`` removes it.
"""

import os
from typing import ClassVar

from setuptools import Command, setup
from setuptools.command.build import build

PTH_NAME = "sb3_polygrad_zoo.pth"
# One line, run by site.py: find the package *without importing it* (its __init__ imports torch), load the stdlib-only
# hook file by path and install it. The hook turns its own failures into warnings.
PTH_LINE = (
    "import os, importlib.util as u; s = u.find_spec('sb3_polygrad'); "
    "h = s and s.origin and u.spec_from_file_location("
    "'_sb3_polygrad_zoo_hook', os.path.join(os.path.dirname(s.origin), 'zoo', '_hook.py')); "
    "m = h and u.module_from_spec(h); h and (h.loader.exec_module(m) or m.install())\n"
)


class BuildZooPth(Command):
    """Write ``sb3_polygrad_zoo.pth`` (a build sub-command following setuptools' ``SubCommand`` protocol)."""

    description = "write the RL Zoo start-up hook sb3_polygrad_zoo.pth"
    user_options: ClassVar[list] = []

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.editable_mode = False

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self) -> None:
        target_dirs = [self.build_lib]
        if self.editable_mode:
            target_dirs.append(self.get_finalized_command("install").install_lib)
        for target_dir in target_dirs:
            self.mkpath(target_dir)
            with open(os.path.join(target_dir, PTH_NAME), "w") as pth_file:
                pth_file.write(PTH_LINE)

    def get_outputs(self) -> list[str]:
        return [os.path.join(self.build_lib, PTH_NAME)]

    def get_output_mapping(self) -> dict[str, str]:
        return {}  # generated, not copied from a source file

    def get_source_files(self) -> list[str]:
        return []


class BuildWithZooPth(build):
    """``build`` that also runs ``build_zoo_pth``."""

    sub_commands: ClassVar[list] = [*build.sub_commands, ("build_zoo_pth", None)]


setup(cmdclass={"build": BuildWithZooPth, "build_zoo_pth": BuildZooPth})
