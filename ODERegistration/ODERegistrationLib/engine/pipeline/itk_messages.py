"""What ITK says while it reads a file, in one line naming the input: its warnings (printed on the process's
standard error, three lines each) and its exceptions' reasons (a multi-line text below a path inside its build)."""
from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Iterator


class ReaderWarning(UserWarning):
    """What ITK's reader said of a file it read: how it took a header it found odd (a NIfTI sform whose scales
    differ from its voxel size, say), the only sign that the geometry may not be what the file meant."""


ITK_OBJECT = r"\w+ ?\(0x[0-9a-f]+\): "
"""How ITK starts a message: the class and the address of the object that says it."""
ITK_WARNING = re.compile(rf"^WARNING: In [^\n]*\n{ITK_OBJECT}([^\n]*)\n?\n?", re.MULTILINE)
"""ITK's warning as it prints it: a line naming its source file, then the object and the message."""


@contextmanager
def itk_warnings_as_python_warnings(source: str) -> Iterator[None]:
    """ITK prints its warnings to the process's standard error, three lines each with a path inside ITK's build;
    while a file is read they are collected and passed on as one ReaderWarning each, naming the input (the command
    line prints each as one line). Anything else written there meanwhile is passed on as it was."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to catch them on (a process started without one)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            sys.stderr.write(ITK_WARNING.sub("", text))
    for message in dict.fromkeys(ITK_WARNING.findall(text)):  # ITK may say the same thing twice
        warnings.warn(f"{source}: ITK: {message}", ReaderWarning, stacklevel=2)


def sitk_reason(error: RuntimeError) -> str:
    """SimpleITK's or ITK's own one-line reason from the multi-line exception text (ITK's reader raises its own:
    a NIfTI file whose sform is sheared is readable but not representable)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        for prefix in ("sitk::ERROR:", "ITK ERROR:"):
            if line.startswith(prefix):
                return re.sub(f"^{ITK_OBJECT}", "", line.removeprefix(prefix).strip())
    if len(lines) > 1 and lines[0].startswith("Exception thrown in SimpleITK"):  # below the line of ITK's source
        return lines[-1]
    return "not an image format SimpleITK can read"
