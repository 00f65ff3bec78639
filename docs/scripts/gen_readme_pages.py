"""Pages taken from sections of README.md at every docs build (mkdocs-gen-files), so that the
README and the site never say different things:

- performance.md   <- "## Backends", the learning table of "## Model types" ("Learning on the
  synthetic scenes ...", as a section "How fast the model types learn") and "## Speed (from `make bench`)"
- import_pytorch.md <- "## Import from PyTorch" (and "## Model files (ONNX)")
- training.md      <- "## Train from the command line"

A section runs from its "## " heading to the next one; its headings move up one level. Run on its
own to print a page: `python docs/scripts/gen_readme_pages.py performance.md`.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

PAGES = {
    "performance.md": ("Performance", ["## Backends", "Learning on the synthetic scenes", "## Speed"],
                       "How fast each backend trains and infers, from `make bench` (`bench/`); the "
                       "numbers are the README's."),
    "import_pytorch.md": ("Import from PyTorch", ["## Import from PyTorch", "## Model files"],
                          "Fine-tune a network trained in PyTorch: export it to ONNX so that batch norm and "
                          "dropout survive, then read it with `read_dl_model`."),
    "distributed.md": ("Distributed training", ["## Several GPUs and several machines"],
                       "Data-parallel training on several GPUs or machines with torch.distributed "
                       "(`dlbatch train --nproc`), and bfloat16."),
    "training.md": ("Training runs and datasets", ["## Train from the command line"],
                    "Whole training runs (epochs, change strategies, augmentation, checkpoints, resume) "
                    "from the command line or with `dlbatch.train_dl_model`, on datasets on disk. Every "
                    "command and option: [CLI reference](reference/cli.md)."),
}


def section(text: str, heading: str, shift: bool = True) -> str:
    """The README section whose heading line starts with `heading`, its headings moved up one
    level when `shift` (the section that gives the page its title)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        raise LookupError(f"README.md has no section starting with {heading!r}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = lines[start:end]
    in_code = False
    out = []
    for line in body:
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if shift and not in_code and re.match(r"^#{2,6} ", line):
            line = line[1:]
        out.append(line)
    return "\n".join(out).strip() + "\n"


def excerpt(text: str, start: str, heading: str) -> str:
    """From the line starting with `start` to the end of the first table after it, under a
    new "## heading"."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(start)), None)
    if first is None:
        raise LookupError(f"README.md has no paragraph starting with {start!r}")
    i, seen_table = first, False
    while i < len(lines) and not (seen_table and not lines[i].startswith("|")):
        seen_table = seen_table or lines[i].startswith("|")
        i += 1
    return "\n".join([f"## {heading}", "", *lines[first:i]]).strip() + "\n"


EXCERPT_HEADINGS = {"Learning on the synthetic scenes": "How fast the model types learn"}


def page(name: str, text: str | None = None) -> str:
    title, headings, intro = PAGES[name]
    text = README.read_text(encoding="utf-8") if text is None else text
    parts = [f"# {title}", "", intro, ""]
    for heading in headings:
        if not heading.startswith("#"):
            parts += [excerpt(text, heading, EXCERPT_HEADINGS[heading]), ""]
            continue
        titled = section(text, heading).startswith(f"# {title}")
        part = section(text, heading, shift=titled)
        if titled:
            part = part.split("\n", 1)[1].lstrip("\n")
        parts += [part, ""]
    return "\n".join(parts)


def write_with_gen_files() -> None:
    import mkdocs_gen_files
    for name in PAGES:
        with mkdocs_gen_files.open(name, "w") as f:
            f.write(page(name))
        mkdocs_gen_files.set_edit_path(name, "../README.md")


if __name__ == "__main__" and len(sys.argv) > 1:
    print(page(sys.argv[1]))
elif __name__ != "__main__":
    write_with_gen_files()
