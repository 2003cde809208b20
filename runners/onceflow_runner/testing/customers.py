"""Business customer records with known, corrupted duplicates, from a fixed seed.

Why: matching is judged on data where the truth is known. Real duplicate customers differ the
way people key them twice: a typo in the company name, the legal form written another way or left
out, "International" abbreviated, first and last name swapped, a nickname, a field left empty, the
company moved. Unrelated records collide the way real ones do: shared postcodes and surnames,
sister companies with the same core name. `generate_customers(seed)` returns the records (the
canonical customer shape with dotted `address.*` and `contact.*` fields) and, per record, the id of
the real customer it describes; `candidate_pairs` is the blocking the floors are measured on.
"""

from __future__ import annotations

import random
import string
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from onceflow_runner.matching.compare import COMPARISONS

__all__ = ["CustomerData", "blocked_pairs", "candidate_pairs", "generate_customers", "without"]

SURNAMES = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Schmitt",
    "Werner",
    "Schmitz",
    "Krause",
    "Meier",
    "Lehmann",
    "Schmid",
    "Schulze",
    "Maier",
    "Köhler",
    "Herrmann",
    "König",
    "Walter",
    "Mayer",
    "Huber",
    "Kaiser",
    "Fuchs",
    "Peters",
    "Lang",
    "Scholz",
    "Möller",
    "Weiß",
    "Jung",
    "Hahn",
    "Vogel",
    "Friedrich",
    "Keller",
    "Günther",
    "Frank",
    "Berger",
    "Winkler",
    "Roth",
    "Beck",
    "Lorenz",
    "Baumann",
    "Franke",
    "Albrecht",
    "Schuster",
    "Simon",
    "Ludwig",
    "Böhm",
    "Winter",
    "Kraus",
    "Martin",
    "Schumacher",
    "Krämer",
    "Vogt",
    "Stein",
    "Jäger",
    "Otto",
    "Sommer",
    "Groß",
    "Seidel",
    "Heinrich",
    "Brandt",
    "Haas",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Clark",
    "Lewis",
    "Walker",
    "Hall",
    "Young",
    "Allen",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "Mitchell",
    "Roberts",
    "Carter",
    "Phillips",
    "Evans",
    "Turner",
    "Parker",
    "Collins",
    "Edwards",
    "Stewart",
    "Jansen",
    "Visser",
    "Smit",
    "Bakker",
    "Mulder",
    "Bos",
    "Vos",
    "Peeters",
    "Dekker",
    "Brouwer",
]
FIRST_NAMES = [
    "William",
    "Robert",
    "Richard",
    "James",
    "John",
    "Elizabeth",
    "Margaret",
    "Katherine",
    "Michael",
    "Thomas",
    "Christopher",
    "Christine",
    "Daniel",
    "Joseph",
    "Alexander",
    "Alexandra",
    "Andrew",
    "Anthony",
    "Benjamin",
    "Charles",
    "Edward",
    "Frederick",
    "Jennifer",
    "Jessica",
    "Matthew",
    "Nicholas",
    "Patricia",
    "Patrick",
    "Peter",
    "Rebecca",
    "Samuel",
    "Stephen",
    "Susan",
    "Timothy",
    "Victoria",
    "Johannes",
    "Wolfgang",
    "Franziska",
    "Gabriele",
    "Barbara",
    "Anna",
    "Maria",
    "Ursula",
    "Monika",
    "Petra",
    "Sabine",
    "Andrea",
    "Birgit",
    "Claudia",
    "Julia",
    "Laura",
    "Sarah",
    "Lena",
    "Lukas",
    "Jonas",
    "Felix",
    "Leon",
    "Paul",
    "Jan",
    "Tobias",
    "Florian",
    "Sebastian",
    "Markus",
    "Jürgen",
    "Uwe",
    "Dieter",
    "Helmut",
    "Bernd",
    "Ralf",
    "Kerstin",
    "Heike",
    "Silke",
    "Anja",
    "Nadine",
    "Emma",
    "Olivia",
    "Noah",
    "Liam",
    "Lucas",
    "Sophie",
    "Mia",
    "Hannah",
    "Ingrid",
    "Sven",
    "Lars",
    "Dirk",
    "Björn",
    "Maarten",
    "Pieter",
    "Sanne",
    "Femke",
]
NICKNAMES = {
    "William": "Bill", "Robert": "Bob", "Richard": "Rick", "James": "Jim", "John": "Jack", "Elizabeth": "Liz",
    "Margaret": "Maggie", "Katherine": "Kate", "Michael": "Mike", "Thomas": "Tom", "Christopher": "Chris",
    "Christine": "Tina", "Daniel": "Dan", "Joseph": "Joe", "Alexander": "Alex", "Alexandra": "Sandra",
    "Andrew": "Andy", "Anthony": "Tony", "Benjamin": "Ben", "Charles": "Charlie", "Edward": "Ed",
    "Frederick": "Fred", "Jennifer": "Jenny", "Jessica": "Jess", "Matthew": "Matt", "Nicholas": "Nick",
    "Patricia": "Pat", "Patrick": "Paddy", "Peter": "Pete", "Rebecca": "Becky", "Samuel": "Sam", "Stephen": "Steve",
    "Susan": "Sue", "Timothy": "Tim", "Victoria": "Vicky", "Johannes": "Hans", "Wolfgang": "Wolf",
    "Franziska": "Franzi", "Gabriele": "Gabi", "Barbara": "Babs",
}  # fmt: skip
TRADES = [
    "Bau",
    "Logistik",
    "Technik",
    "Handel",
    "Systems",
    "Solutions",
    "International",
    "Manufacturing",
    "Services",
    "Trading",
    "Holding",
    "Engineering",
    "Consulting",
    "Distribution",
    "Metall",
    "Elektro",
    "Food",
    "Pharma",
    "Textil",
    "Maschinenbau",
    "Software",
    "Druck",
    "Transport",
    "Medien",
    "Automotive",
    "Verpackung",
    "Chemie",
    "Energie",
    "Immobilien",
    "Sanitär",
    "Industries",
    "Management",
    "Group",
    "Digital",
]
ABBREVIATED = {
    "International": "Intl.", "Manufacturing": "Mfg.", "Services": "Svcs.", "Technik": "Techn.",
    "Distribution": "Distr.", "Industries": "Inds.", "Management": "Mgmt.", "Engineering": "Eng.", "Group": "Grp.",
}  # fmt: skip
STREETS = [
    "Haupt",
    "Bahnhof",
    "Schul",
    "Garten",
    "Dorf",
    "Berg",
    "Kirch",
    "Wald",
    "Ring",
    "Linden",
    "Birken",
    "Eichen",
    "Mühlen",
    "Wiesen",
    "Feld",
    "Rosen",
    "Friedrich",
    "Goethe",
    "Schiller",
    "Mozart",
    "Industrie",
    "Gewerbe",
    "Markt",
    "Park",
    "Post",
    "Tal",
    "Brunnen",
    "Kastanien",
    "Ahorn",
    "Buchen",
]
STREET_KINDS = ("straße", "weg", "allee", "platz", "ring")
UK_STREETS = [
    "High",
    "Station",
    "Church",
    "Park",
    "Victoria",
    "Green",
    "Manor",
    "Mill",
    "Kings",
    "Queens",
    "Bridge",
    "Market",
]
COUNTRIES: dict[str, tuple[str, tuple[str, ...], list[str], str]] = {
    # country: (phone prefix, legal forms, cities, tax prefix)
    "DE": ("+49", ("GmbH", "AG", "GmbH & Co. KG", "KG", "UG (haftungsbeschränkt)", "e.K."),
           ["Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Stuttgart", "Düsseldorf", "Leipzig", "Dortmund",
            "Essen", "Bremen", "Dresden", "Hannover", "Nürnberg", "Duisburg", "Bochum", "Wuppertal", "Bielefeld",
            "Bonn", "Münster"], "DE"),
    "AT": ("+43", ("GmbH", "AG", "KG", "e.U."), ["Wien", "Graz", "Linz", "Salzburg", "Innsbruck"], "ATU"),
    "CH": ("+41", ("AG", "GmbH", "SA", "Sàrl"), ["Zürich", "Genf", "Basel", "Bern", "Lausanne"], "CHE"),
    "NL": ("+31", ("B.V.", "N.V.", "V.O.F."), ["Amsterdam", "Rotterdam", "Utrecht", "Eindhoven", "Groningen"], "NL"),
    "GB": ("+44", ("Ltd", "Limited", "PLC", "LLP"), ["London", "Manchester", "Birmingham", "Leeds", "Glasgow"], "GB"),
    "US": ("+1", ("Inc.", "LLC", "Corp.", "Co."), ["Boston", "Chicago", "Denver", "Seattle", "Austin"], "US"),
}  # fmt: skip
COUNTRY_WEIGHTS = {"DE": 55, "AT": 10, "CH": 8, "NL": 9, "GB": 9, "US": 9}
LEGAL_VARIANTS = {
    "GmbH": ("G.m.b.H.", "Gesellschaft mbH", "GMBH", ""), "AG": ("Aktiengesellschaft", ""),
    "GmbH & Co. KG": ("GmbH & Co KG", "GmbH u. Co. KG", "KG"), "KG": ("", "Kommanditgesellschaft"),
    "UG (haftungsbeschränkt)": ("UG", ""), "e.K.": ("eK", "e. K.", ""), "e.U.": ("", "eU"), "SA": ("S.A.", ""),
    "Sàrl": ("Sarl", "S.à r.l."), "B.V.": ("BV", "B.V", ""), "N.V.": ("NV", ""), "V.O.F.": ("VOF", ""),
    "Ltd": ("Ltd.", "Limited", ""), "Limited": ("Ltd", ""), "PLC": ("plc", ""), "LLP": ("", "L.L.P."),
    "Inc.": ("Inc", "Incorporated", ""), "LLC": ("L.L.C.", ""), "Corp.": ("Corporation", "Corp", ""),
    "Co.": ("Company", ""),
}  # fmt: skip


@dataclass(frozen=True)
class CustomerData:
    """Generated records and, per record, the id of the real customer it describes."""

    records: list[dict[str, Any]]
    entities: list[int]

    def true_pairs(self) -> set[tuple[int, int]]:
        """Every pair of record indexes (lower first) that describe the same customer."""
        by_entity: dict[int, list[int]] = defaultdict(list)
        for index, entity in enumerate(self.entities):
            by_entity[entity].append(index)
        return {pair for members in by_entity.values() for pair in combinations(members, 2)}


def _typo(rng: random.Random, text: str) -> str:
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if len(letters) < 4:
        return text
    i = rng.choice(letters[1:])
    op = rng.randrange(4)
    if op == 0:
        return text[:i] + text[i + 1 :]
    if op == 1:
        return text[:i] + rng.choice(string.ascii_lowercase) + text[i:]
    if op == 2:
        return text[:i] + rng.choice(string.ascii_lowercase) + text[i + 1 :]
    j = i - 1
    return text[:j] + text[i] + text[j] + text[i + 1 :]


def _street(rng: random.Random, country: str) -> str:
    number = rng.randint(1, 180)
    if country in ("GB", "US"):
        return f"{number} {rng.choice(UK_STREETS)} {rng.choice(('Street', 'Road', 'Avenue', 'Lane'))}"
    return f"{rng.choice(STREETS)}{rng.choice(STREET_KINDS)} {number}"


def _place(rng: random.Random, country: str, postcodes: dict[str, list[tuple[str, str]]]) -> tuple[str, str]:
    return rng.choice(postcodes[country])


def _postcodes(rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for country, (_, _, cities, _) in COUNTRIES.items():
        places = []
        for city in cities:
            base = rng.randint(10, 99)
            for _ in range(6 if country == "DE" else 4):
                if country in ("DE", "US"):
                    code = f"{base}{rng.randint(0, 999):03d}"
                elif country == "NL":
                    code = f"{base * 10 + rng.randint(0, 9)} {rng.choice('ABCDEFGHJK')}{rng.choice('ABCDEFGHJK')}"
                elif country == "GB":
                    inward = f"{rng.randint(1, 9)}{rng.choice('ABDEFG')}{rng.choice('HJLNPQ')}"
                    code = f"{city[:2].upper()}{rng.randint(1, 20)} {inward}"
                else:
                    code = f"{base * 10 + rng.randint(0, 99):04d}"
                places.append((code, city))
        out[country] = places
    return out


def _original(rng: random.Random, index: int, postcodes: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    country = rng.choices(list(COUNTRY_WEIGHTS), weights=list(COUNTRY_WEIGHTS.values()))[0]
    prefix, legal_forms, _, tax_prefix = COUNTRIES[country]
    first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
    sole_trader = rng.random() < 0.25
    if sole_trader:
        core = f"{first} {last} {rng.choice(TRADES)}"
        legal = "e.K." if country == "DE" else rng.choice(("", legal_forms[-1]))
    else:
        pattern = rng.randrange(4)
        if pattern == 0:
            core = f"{rng.choice(SURNAMES)} {rng.choice(TRADES)}"
        elif pattern == 1:
            core = f"{rng.choice(SURNAMES)} & {rng.choice(SURNAMES)}"
        elif pattern == 2:
            core = f"{rng.choice(SURNAMES)} {rng.choice(TRADES)} {rng.choice(TRADES)}"
        else:
            core = f"{rng.choice(TRADES)} {rng.choice(SURNAMES)}"
        legal = rng.choice(legal_forms)
    postcode, city = _place(rng, country, postcodes)
    domain = (
        "".join(c for c in core.split()[0].lower() if c.isalpha())
        + rng.choice(("-", ""))
        + "".join(c for c in core.split()[-1].lower() if c.isalpha())
    )
    mailbox = rng.choice((f"{first}.{last}", f"{first[0]}.{last}", "info", "einkauf", f"{last}")).lower()
    digits = f"{rng.randint(20, 999)} {rng.randint(100000, 9999999)}"
    record: dict[str, Any] = {
        "id": f"C{index:05d}",
        "name": f"{core} {legal}".strip(),
        "legal_form": legal,
        "tax_id": f"{tax_prefix}{rng.randint(100000000, 999999999)}",
        "contact": {"first_name": first, "last_name": last},
        "email": f"{mailbox}@{domain}.{country.lower() if country != 'US' else 'com'}",
        "phone": f"{prefix} {digits}",
        "address": {"line1": _street(rng, country), "city": city},
        "postal_code": postcode,
        "country": country,
    }
    if sole_trader:
        record["date_of_birth"] = f"{rng.randint(1950, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    for optional in ("email", "phone"):
        if rng.random() < 0.1:
            record[optional] = None
    return record


def _corrupt(rng: random.Random, source: dict[str, Any], postcodes: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    rec: dict[str, Any] = {**source, "contact": dict(source["contact"]), "address": dict(source["address"])}
    kinds = [
        "typo_company", "legal_variant", "abbreviate", "swap_names", "nickname", "typo_last", "initial_first",
        "missing", "missing", "moved", "email", "phone_format", "dob", "street_format", "case", "typo_street",
    ]  # fmt: skip
    for kind in rng.sample(kinds, rng.choice((1, 2, 2, 3, 3, 4))):
        first, last = rec["contact"]["first_name"], rec["contact"]["last_name"]
        legal = rec.get("legal_form") or ""
        core = (
            rec["name"][: len(rec["name"]) - len(legal)].strip()
            if legal and rec["name"].endswith(legal)
            else rec["name"]
        )
        if kind == "typo_company":
            rec["name"] = f"{_typo(rng, core)} {legal}".strip()
        elif kind == "legal_variant" and legal in LEGAL_VARIANTS:
            legal = rng.choice(LEGAL_VARIANTS[legal])
            rec["name"], rec["legal_form"] = f"{core} {legal}".strip(), legal
        elif kind == "abbreviate":
            words = [ABBREVIATED.get(w, w) for w in core.split()]
            rec["name"] = f"{' '.join(words).replace(' & ', ' und ' if rng.random() < 0.5 else ' & ')} {legal}".strip()
        elif kind == "swap_names" and first and last:
            rec["contact"] = {"first_name": last, "last_name": first}
        elif kind == "nickname" and first in NICKNAMES:
            rec["contact"]["first_name"] = NICKNAMES[first]
        elif kind == "typo_last" and last:
            rec["contact"]["last_name"] = _typo(rng, last)
        elif kind == "initial_first" and first:
            rec["contact"]["first_name"] = f"{first[0]}."
        elif kind == "missing":
            victim = rng.choice(("email", "phone", "tax_id", "address.line1", "contact.first_name", "postal_code"))
            if "." in victim:
                outer, inner = victim.split(".")
                rec[outer][inner] = None
            else:
                rec[victim] = None
        elif kind == "moved":
            rec["address"] = {"line1": _street(rng, rec["country"])}
            rec["postal_code"], rec["address"]["city"] = _place(rng, rec["country"], postcodes)
            if rec.get("phone") and rng.random() < 0.5:
                prefix = str(rec["phone"]).split()[0]
                rec["phone"] = f"{prefix} {rng.randint(20, 999)} {rng.randint(100000, 9999999)}"
        elif kind == "email" and rec.get("email"):
            local, _, domain = str(rec["email"]).partition("@")
            rec["email"] = rng.choice(
                (f"{local.upper()}@{domain}", f"{_typo(rng, local)}@{domain}", f"{local}@{domain.upper()}")
            )
        elif kind == "phone_format" and rec.get("phone"):
            digits = "".join(c for c in str(rec["phone"]) if c.isdigit())
            national = "0" + digits[2:] if rec["country"] != "US" else digits[1:]
            rec["phone"] = rng.choice((national, f"00{digits}", f"+{digits[:2]} ({digits[2:5]}) {digits[5:]}"))
        elif kind == "dob" and rec.get("date_of_birth"):
            y, mo, d = str(rec["date_of_birth"]).split("-")
            rec["date_of_birth"] = f"{d}.{mo}.{y}" if int(d) > 12 or rng.random() < 0.5 else f"{y}-{d}-{mo}"
        elif kind == "street_format" and rec["address"].get("line1"):
            line = str(rec["address"]["line1"])
            rec["address"]["line1"] = line.replace("straße", "str.").replace("Street", "St").replace("Road", "Rd")
        elif kind == "case":
            rec["name"] = str(rec["name"]).upper()
        elif kind == "typo_street" and rec["address"].get("line1"):
            rec["address"]["line1"] = _typo(rng, str(rec["address"]["line1"]))
    return rec


def _sister(
    rng: random.Random, index: int, source: dict[str, Any], postcodes: dict[str, list[tuple[str, str]]]
) -> dict[str, Any]:
    """A different company that shares the core name (a branch, a relative's firm): a hard non-duplicate."""
    other = _original(rng, index, postcodes)
    core = str(source["name"]).split()[0]
    other["name"] = f"{core} {rng.choice(TRADES)} {other['legal_form']}".strip()
    if rng.random() < 0.5:
        other["postal_code"], other["address"]["city"] = source["postal_code"], source["address"]["city"]
        other["country"] = source["country"]
    return other


def generate_customers(seed: int, originals: int = 2500, duplicate_rate: float = 0.3) -> CustomerData:
    """`originals` customers, about `duplicate_rate` of them keyed again with corruptions, shuffled.

    About 5% of customers get a sister company (same core name, maybe the same town) that is not
    a duplicate. The same seed gives the same data.
    """
    rng = random.Random(seed)
    postcodes = _postcodes(rng)
    records: list[dict[str, Any]] = []
    entities: list[int] = []
    for entity in range(originals):
        original = _original(rng, entity, postcodes)
        records.append(original)
        entities.append(entity)
        if rng.random() < duplicate_rate:
            for _ in range(2 if rng.random() < 0.15 else 1):
                records.append(_corrupt(rng, original, postcodes))
                entities.append(entity)
        if rng.random() < 0.05:
            records.append(_sister(rng, entity, original, postcodes))
            entities.append(originals + entity)
    order = list(range(len(records)))
    rng.shuffle(order)
    shuffled = [records[i] for i in order]
    for n, rec in enumerate(shuffled):
        rec["id"] = f"R{n:05d}"
        rec.pop("legal_form", None)
    return CustomerData(shuffled, [entities[i] for i in order])


def candidate_pairs(records: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """Every pair of `blocked_pairs`, whichever rule found it."""
    return set().union(*blocked_pairs(records).values())


def blocked_pairs(records: list[dict[str, Any]]) -> dict[tuple[str, ...], set[tuple[int, int]]]:
    """Blocking: pairs that share a postcode, or the first four letters of the normalised company name.

    This is what a dedupe step's search returns for one record (a search by postcode or by name
    prefix), so the floors are measured on the pairs the step would score.
    """
    company = COMPARISONS["company"].prepare
    blocks: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, rec in enumerate(records):
        if rec.get("postal_code"):
            blocks[("postal_code", str(rec["postal_code"]).replace(" ", "").upper())].append(index)
        name = company(rec.get("name"))
        if name:
            blocks[("name", name.replace(" ", "")[:4])].append(index)
    out: dict[tuple[str, ...], set[tuple[int, int]]] = {
        ("postal_code", "address.city", "country"): set(),
        ("name",): set(),
    }
    for (rule, _), members in blocks.items():
        key = ("postal_code", "address.city", "country") if rule == "postal_code" else ("name",)
        out[key].update(combinations(members, 2))
    return out


def without(records: Iterable[dict[str, Any]], *fields: str) -> list[dict[str, Any]]:
    """Copies of the records with top-level fields removed (e.g. tax_id, date_of_birth)."""
    return [{k: v for k, v in rec.items() if k not in fields} for rec in records]
