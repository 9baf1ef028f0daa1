"""MkDocs hooks (``mkdocs.yml``: ``hooks``): the results on the site, links into them, nothing fetched.

The pages in ``docs/`` link to figures, tables and executed notebooks where they are in the
repository (``../../results/dpf_sweeps/structured.png`` from ``docs/results/dpf.md``), so the links
work on a Git host too. Here those files are added to the site at their repository paths (beside the
pages: ``results/dpf_sweeps/structured.png``) and such links are rewritten to point there; the executed notebooks get a "Notebooks" section in the navigation when
mkdocs-jupyter renders them. Finally every script or stylesheet loaded from another host is dropped
(mkdocs-jupyter adds MathJax from a CDN): the site works offline.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

# repository paths the docs may link to: folders (only these file types) and single files
MOUNTED_FOLDERS = {"results": (".png", ".ipynb", ".csv", ".json")}
MOUNTED_FILES = ("params.yaml", "dvc.yaml", "CITATION.cff")
LINK = re.compile(r"(\]\()([^)\s]+)(\))")
REMOTE_ASSET = re.compile(r"""<script[^>]*\ssrc=["']https?://[^>]*>\s*</script>|<link[^>]*\shref=["']https?://[^>]*>""")
NOTEBOOK_PLUGIN = "mkdocs-jupyter"


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _mounted(root: Path) -> list[str]:
    paths = [name for name in MOUNTED_FILES if (root / name).is_file()]
    for folder, suffixes in MOUNTED_FOLDERS.items():
        for path in sorted((root / folder).rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and path.suffix in suffixes and "failed" not in relative.parts[:2]:
                paths.append(relative.as_posix())
    return paths


def _notebooks(root: Path) -> list[str]:
    return sorted(p for p in _mounted(root) if p.endswith(".ipynb"))


def on_config(config):
    """Add the executed notebooks to the navigation when mkdocs-jupyter renders them."""
    if NOTEBOOK_PLUGIN in config.plugins and config.nav is not None:
        notebooks = [{Path(p).stem: p} for p in sorted(_notebooks(_root(config)), key=lambda p: Path(p).name)]
        if notebooks:
            config.nav.append({"Executed notebooks": notebooks})
    return config


@event_priority(100)  # before mkdocs-jupyter looks for notebooks among the files
def on_files(files, config):
    """Add the mounted repository files to the site at their repository paths."""
    root = _root(config)
    for relative in _mounted(root):
        files.append(File(relative, str(root), config.site_dir, config.use_directory_urls))
    return files


def repository_link(link: str, page_src_uri: str, docs_dir: Path, root: Path) -> str:
    """``link`` from the page at ``page_src_uri``, rewritten to the site's copy when it leaves the docs
    for a mounted repository file; any other link unchanged."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^[#/]", link):
        return link  # a URL, an anchor or an absolute path
    path, hash_, anchor = link.partition("#")
    target = Path(os.path.normpath(docs_dir / posixpath.dirname(page_src_uri) / path))
    if target == docs_dir or docs_dir in target.parents or root not in target.parents:
        return link
    relative = target.relative_to(root).as_posix()
    mounted = relative in MOUNTED_FILES or relative.split("/", 1)[0] in MOUNTED_FOLDERS
    if not mounted:
        return link
    new = posixpath.relpath(relative, posixpath.dirname(page_src_uri) or ".")
    return f"{new}{hash_}{anchor}"


def on_page_markdown(markdown, page, config, files):
    docs_dir, root = Path(config.docs_dir).resolve(), _root(config)
    return LINK.sub(lambda m: m[1] + repository_link(m[2], page.file.src_uri, docs_dir, root) + m[3], markdown)


def on_post_page(output, page, config):
    return REMOTE_ASSET.sub("", output)
