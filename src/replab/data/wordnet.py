"""WordNet noun glosses with their supersense (lexicographer file) labels, from Debian's wordnet-base."""

from __future__ import annotations

import csv
from pathlib import Path

from .arrays import save_json

DATA_NOUN = Path("/usr/share/wordnet/data.noun")
APT_HINT = "apt-get install -y wordnet-base"

# The standard WordNet lexicographer files (lexnames(5WN)); nouns use 03-28.
NOUN_LEXNAMES = {
    3: "noun.Tops",
    4: "noun.act",
    5: "noun.animal",
    6: "noun.artifact",
    7: "noun.attribute",
    8: "noun.body",
    9: "noun.cognition",
    10: "noun.communication",
    11: "noun.event",
    12: "noun.feeling",
    13: "noun.food",
    14: "noun.group",
    15: "noun.location",
    16: "noun.motive",
    17: "noun.object",
    18: "noun.person",
    19: "noun.phenomenon",
    20: "noun.plant",
    21: "noun.possession",
    22: "noun.process",
    23: "noun.quantity",
    24: "noun.relation",
    25: "noun.shape",
    26: "noun.state",
    27: "noun.substance",
    28: "noun.time",
}

COLUMNS = ("offset", "supersense", "lemma", "gloss")


def parse_line(line: str) -> tuple[str, str, str, str]:
    """One synset line: ``offset lex_filenum ss_type w_cnt word lex_id ... | gloss``."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    lexname = NOUN_LEXNAMES.get(int(fields[1]))
    if lexname is None:
        raise ValueError(f"synset {fields[0]}: lexicographer file {fields[1]} is not a noun file")
    return fields[0], lexname, fields[4].replace("_", " "), gloss.strip()


def build(out: Path, source: Path = DATA_NOUN) -> int:
    if not source.exists():
        raise FileNotFoundError(f"{source} not found: install WordNet with `{APT_HINT}` (as root)")
    rows = []
    with source.open(encoding="utf-8", errors="strict") as f:
        for line in f:
            if line.startswith("  "):  # licence header
                continue
            rows.append(parse_line(line.rstrip("\n")))
    out.mkdir(parents=True)
    with (out / "noun_glosses.tsv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    save_json(out / "meta.json", {"source": "Debian wordnet-base, data.noun", "n_synsets": len(rows)})
    return len(rows)


def load(data_dir: Path):
    """The glosses as a pandas DataFrame with columns :data:`COLUMNS`."""
    import pandas as pd

    return pd.read_csv(Path(data_dir) / "wordnet" / "noun_glosses.tsv", sep="\t", dtype=str, keep_default_na=False)
