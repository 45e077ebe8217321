"""Task metrics computed with NumPy from predictions collected over a whole split."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts[i, j] of examples of class i predicted as class j.

    Args:
        y_true: true class ids.
        y_pred: predicted class ids.
        num_classes: number of classes.
    """
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def classification_metrics(y_true, y_pred, class_names: list[str]) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1, plus the confusion matrix.

    Args:
        y_true: true class ids.
        y_pred: predicted class ids.
        class_names: names in class-id order.
    """
    matrix = confusion_matrix(y_true, y_pred, len(class_names))
    tp = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    # Macro-F1 averages over classes present in the truth or the predictions, like sklearn.
    present = (actual + predicted) > 0
    return {
        "accuracy": float(tp.sum() / max(matrix.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "examples": int(matrix.sum()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)
        },
        "confusion_matrix": matrix.tolist(),
    }


def translation_scores(hypotheses: list[str], references: list[list[str]], lowercase: bool) -> dict:
    """Corpus BLEU and chrF from ``sacrebleu`` (its standard 13a tokenization).

    Args:
        hypotheses: one system output per sentence.
        references: one or more reference lists, each parallel to ``hypotheses``.
        lowercase: compare case-insensitively.
    """
    from sacrebleu.metrics import BLEU, CHRF

    bleu = BLEU(lowercase=lowercase).corpus_score(hypotheses, references)
    chrf = CHRF(lowercase=lowercase).corpus_score(hypotheses, references)
    return {"bleu": round(bleu.score, 2), "chrf": round(chrf.score, 2), "bleu_detail": str(bleu)}


def caption_bleu(hypotheses: list[str], references: list[list[str]]) -> dict:
    """Corpus BLEU-1 to BLEU-4 (sacreBLEU, lowercased) of captions against all their references.

    Args:
        hypotheses: one caption per image.
        references: the reference captions of each image (any number per image).
    """
    from sacrebleu.metrics import BLEU

    most = max((len(r) for r in references), default=1)
    # sacreBLEU takes reference streams of equal length: repeating an image's first reference
    # changes neither clipped n-gram counts nor the closest reference length.
    streams = [[r[k] if k < len(r) else r[0] for r in references] for k in range(most)]
    return {
        f"bleu{n}": round(
            BLEU(lowercase=True, max_ngram_order=n).corpus_score(hypotheses, streams).score, 2
        )
        for n in (1, 2, 3, 4)
    }


def caption_cider(hypotheses: list[str], references: list[list[str]]) -> float | None:
    """Corpus CIDEr-D (pycocoevalcap's pure-Python scorer), or None when it is not installed.

    Tokens are lowercased words (punctuation dropped), in place of the COCO toolkit's Java PTB
    tokenizer. Install with ``pip install "lstm-recipes[cider]"``.

    Args:
        hypotheses: one caption per image.
        references: the reference captions of each image.
    """
    import re

    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        return None

    def tokens(text: str) -> str:
        return " ".join(re.findall(r"[\w']+", text.lower()))

    gts = {i: [tokens(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [tokens(h)] for i, h in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return round(float(score), 4)


def masked_accuracy(y_true, logits):
    """Keras metric: accuracy of the argmax over the real (non-zero) target tokens only.

    Returns one value per row (the mean over its real tokens) so Keras's running mean weighs
    rows; rows are similar in length within a bucketed batch.
    """
    from keras import ops

    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    hits = ops.cast(ops.equal(ops.cast(y_true, "int32"), ops.argmax(logits, -1)), "float32")
    return ops.sum(hits * mask, -1) / ops.maximum(ops.sum(mask, -1), 1.0)


def _split_tag(tag: str) -> tuple[str, str]:
    # "B-NP" -> ("B", "NP"); "O" -> ("O", ""); a tag without a prefix is its own type.
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if dash and prefix in ("B", "I", "E", "S"):
        return prefix, kind
    return "I", tag


def _end_of_chunk(prev_tag, tag, prev_type, kind) -> bool:
    # conlleval's rules, extended with BIOES's E and S as in its common Python port.
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag != "O" and prev_type != kind)
    )


def _start_of_chunk(prev_tag, tag, prev_type, kind) -> bool:
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
        or (tag != "O" and prev_type != kind)
    )


def chunks(tags: list[str]) -> set[tuple[int, int, str]]:
    """(start, end exclusive, type) of every chunk in one sentence's tags, with conlleval's
    semantics: IOB1, IOB2 (BIO), IOE and BIOES all read correctly.

    Args:
        tags: e.g. ``["B-NP", "I-NP", "O", "B-VP"]``.
    """
    found, start = set(), None
    prev_tag, prev_type = "O", ""
    for i, raw in enumerate([*tags, "O"]):
        tag, kind = _split_tag(raw)
        if start is not None and _end_of_chunk(prev_tag, tag, prev_type, kind):
            found.add((start, i, prev_type))
            start = None
        if _start_of_chunk(prev_tag, tag, prev_type, kind):
            start = i
        prev_tag, prev_type = tag, kind
    return found


def chunk_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Chunk precision, recall and F1 (in %, like conlleval), overall and per chunk type.

    A chunk counts as correct when its start, end and type all match the gold chunk's.

    Args:
        gold: gold tags, one list per sentence.
        predicted: predicted tags, parallel to ``gold``.
    """
    counts: dict[str, list[int]] = {}  # type -> [correct, predicted, gold]
    for g, p in zip(gold, predicted):
        gold_chunks, pred_chunks = chunks(g), chunks(p)
        for kind in {c[2] for c in gold_chunks | pred_chunks}:
            c = counts.setdefault(kind, [0, 0, 0])
            c[0] += len({x for x in gold_chunks & pred_chunks if x[2] == kind})
            c[1] += len([x for x in pred_chunks if x[2] == kind])
            c[2] += len([x for x in gold_chunks if x[2] == kind])

    def prf(correct, guessed, truth):
        precision = 100.0 * correct / guessed if guessed else 0.0
        recall = 100.0 * correct / truth if truth else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "support": truth}

    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {**prf(*total), "per_type": {k: prf(*v) for k, v in sorted(counts.items())}}


def segments(labels) -> list[tuple[int, int, str]]:
    """Maximal runs of one label: (start, end exclusive, label)."""
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((start, i, labels[start]))
            start = i
    return runs


def segment_f1(gold: list, predicted: list, overlap: float = 0.5) -> float:
    """Segmental F1@overlap as MS-TCN computes it (Farha & Gall 2019, ``eval.py``'s ``f_score``,
    after Lea et al. 2017), over all sequences together.

    Each predicted run takes the gold run of its label with the highest intersection-over-union
    (the first on a tie); it is a true positive when that IoU >= ``overlap`` and that gold run
    is not matched yet, else a false positive, even if another unmatched gold run would do.
    Unmatched gold runs are false negatives. Every label counts (no background class).

    Args:
        gold: gold labels, one sequence per recording.
        predicted: predicted labels, parallel to ``gold``.
        overlap: IoU threshold.
    """
    tp = fp = fn = 0
    for g, p in zip(gold, predicted):
        gold_runs = segments(list(g))
        used = [False] * len(gold_runs)
        for start, end, label in segments(list(p)):
            # Another label's run scores 0, as MS-TCN's IoU times its label-equality mask.
            ious = [
                (min(end, ge) - max(start, gs)) / (max(end, ge) - min(start, gs))
                if gl == label
                else 0.0
                for gs, ge, gl in gold_runs
            ]
            best = int(np.argmax(ious)) if ious else -1
            if best >= 0 and ious[best] >= overlap and not used[best]:
                used[best] = True
                tp += 1
            else:
                fp += 1
        fn += used.count(False)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 100.0 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0
