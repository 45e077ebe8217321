"""Captioned images: the captions files image-captioning corpora come in, and split lists.

Forms (pure Python, so bad input is reported before TensorFlow starts):

- ``captions.csv`` / ``.tsv``: ``image,caption`` rows, several per image (columns named by the
  caller);
- Flickr8k's ``*.token.txt`` (or ``captions.txt``): ``image.jpg#N<TAB>caption`` per line;
- ``captions.jsonl``: ``{"image": ..., "captions": [...]}`` per line;
- split lists: one image file name per line (Flickr's ``Flickr_8k.trainImages.txt``, ...).

The images sit in the folder given, in the captions file's folder, or in its ``images/`` (or
Flickr8k's ``Flicker8k_Dataset/``) sub-folder.
"""

from __future__ import annotations

from pathlib import Path

from lstm_recipes.data import files, reading
from lstm_recipes.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CAPTIONS_FILES = ("captions.csv", "captions.tsv", "captions.jsonl", "captions.txt")


def find_captions(path: Path) -> Path:
    """The captions file meant by ``path``: itself, or one in or beside the folder.

    Args:
        path: a captions file or a folder.
    """
    if path.is_file():
        return path
    for folder in (path, path.parent):
        for name in CAPTIONS_FILES:
            if (folder / name).is_file():
                return folder / name
        # Flickr8k_text also holds Flickr8k.lemma.token.txt (lemmatized captions): not that one.
        tokens = sorted(folder.glob("*.token.txt"), key=lambda p: (".lemma." in p.name, p.name))
        if tokens:
            return tokens[0]
    raise UserError(
        f"expected a captions file (captions.csv, captions.jsonl or *.token.txt) in or beside "
        f"{path}, found none"
    )


def image_folder(captions: Path, data: Path) -> Path:
    """The folder of images that ``captions`` describes.

    Args:
        captions: the captions file.
        data: what the user gave (a folder is tried first).
    """
    candidates = [data] if data.is_dir() else []
    candidates += [captions.parent / "images", captions.parent / "Flicker8k_Dataset"]
    candidates += [captions.parent / "Flickr8k_Dataset", captions.parent]
    for folder in candidates:
        if folder.is_dir() and any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file()
        ):
            return folder
    raise UserError(f"expected a folder of .jpg/.png images beside {captions}, found none")


# Image file name -> its captions, and the line where each image is first named.
Captioned = tuple[dict[str, list[str]], dict[str, int]]


def _token_lines(path: Path) -> Captioned:
    by_image: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    for n, line in enumerate(files.read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        if not sep:
            reading.bad_row(f"{path}:{n}", f"expected IMAGE#N<TAB>caption, found {line[:80]!r}")
            continue
        image = key.split("#")[0].strip()
        by_image.setdefault(image, []).append(caption.strip())
        lines.setdefault(image, n)
    return by_image, lines


def _jsonl(path: Path, image_column: str) -> Captioned:
    by_image: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    for n, row in files.read_rows(path, [image_column, "captions"]):
        caps = row["captions"]
        if not isinstance(caps, list):
            reading.bad_row(
                f"{path}:{n}",
                f"expected 'captions' to be a list of strings, found {type(caps).__name__}",
            )
            continue
        by_image.setdefault(str(row[image_column]), []).extend(map(str, caps))
        lines.setdefault(str(row[image_column]), n)
    return by_image, lines


def _table(path: Path, image_column: str, caption_column: str) -> Captioned:
    by_image: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    for n, row in files.read_rows(path, [image_column, caption_column]):
        by_image.setdefault(str(row[image_column]), []).append(str(row[caption_column]))
        lines.setdefault(str(row[image_column]), n)
    return by_image, lines


def read_captions(
    spec: str, image_column: str = "image", caption_column: str = "caption"
) -> tuple[dict[str, list[str]], Path]:
    """Image file name -> its captions, and the image folder, from a folder or captions file.

    Captions of an image that is not in the folder (Flickr8k's own token file names one) are
    an error, or are skipped and reported within the run's ``skip_bad_rows`` (one bad row per
    image).

    Args:
        spec: a folder of images with its captions file, or the captions file itself.
        image_column: CSV column / JSON key naming the image file.
        caption_column: CSV column of the caption (JSONL holds a ``captions`` list).
    """
    data = Path(spec)
    if not data.exists():
        raise UserError(f"expected a captions file or an image folder at {spec}, found nothing")
    captions_path = find_captions(data)
    images = image_folder(captions_path, data)
    name = captions_path.name.lower()
    if name.endswith(".token.txt") or name == "captions.txt":
        by_image, lines = _token_lines(captions_path)
    elif name.endswith(".jsonl"):
        by_image, lines = _jsonl(captions_path, image_column)
    else:
        by_image, lines = _table(captions_path, image_column, caption_column)
    unknown = [k for k in by_image if not (images / k).is_file()]
    report = reading.current()
    if len(unknown) > report.room():
        # Refuse with the count of all of them: skipping them one by one up to the bound
        # would only tell the user about the first few.
        raise report.refusal(
            f"{captions_path} has captions for {len(unknown)} image(s) not in {images}, e.g. "
            f"{unknown[0]!r}; expected every captioned image to exist"
        )
    for k in unknown:
        reading.bad_row(
            f"{captions_path}:{lines[k]}", f"expected the image {k!r} in {images}, found none"
        )
        del by_image[k]
    return by_image, images


def read_split_lists(split_files: str, folders: list[Path]) -> list[set[str]] | None:
    """The image names of each list in ``TRAIN,DEV,TEST``, or None when none is given.

    Args:
        split_files: three comma-separated file names (absolute, or found in ``folders``).
        folders: where relative names are looked for, in order.
    """
    if not split_files:
        return None
    lists = []
    for name in split_files.split(","):
        name = name.strip()
        found = [f / name for f in folders if (f / name).is_file()]
        path = Path(name) if Path(name).is_absolute() else (found[0] if found else None)
        if path is None or not path.is_file():
            raise UserError(
                f"expected the split list {name} (split_files) in "
                f"{', '.join(str(f) for f in folders)}, found no file"
            )
        text = files.read_text(path)
        lists.append({line.strip() for line in text.splitlines() if line.strip()})
    if len(lists) != 3:
        raise UserError(f"expected split_files=TRAIN,DEV,TEST (3 lists), found {len(lists)}")
    return lists
