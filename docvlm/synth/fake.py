"""Random but plausible Australian entities: people, businesses, addresses, ABNs, dates.

Every function takes a `random.Random` so documents are reproducible from a seed. The word pools are
test data for the generator (not domain rules of the pipeline), so they live here, not in conf/.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

CENT = Decimal("0.01")

FIRST_NAMES = (
    "Olivia", "Jack", "Charlotte", "Noah", "Amelia", "William", "Isla", "Oliver", "Mia", "Thomas",
    "Grace", "Lachlan", "Chloe", "Liam", "Ruby", "James", "Sophie", "Henry", "Zoe", "Ethan",
    "Priya", "Wei", "Aisha", "Nikolaos", "Mei", "Rahul", "Fatima", "Luca", "Hannah", "Daniel",
)
SURNAMES = (
    "Smith", "Nguyen", "Williams", "Brown", "Wilson", "Taylor", "Johnson", "White", "Martin", "Anderson",
    "Thompson", "Walker", "Harris", "Ryan", "Kelly", "Papadopoulos", "Chen", "Singh", "Murphy", "O'Brien",
    "Kowalski", "Rossi", "Patel", "Campbell", "Robinson", "Clarke", "Mitchell", "Tran", "Young", "King",
)
STREETS = (
    "George", "Pitt", "Collins", "Flinders", "Queen", "King", "Elizabeth", "Victoria", "Church", "High",
    "Station", "Railway", "Park", "Bridge", "Beach", "Wattle", "Banksia", "Macquarie", "Hunter", "Albert",
)
STREET_TYPES = ("Street", "St", "Road", "Rd", "Avenue", "Ave", "Parade", "Lane", "Drive", "Highway")
SUBURBS = (  # (suburb, state, postcode)
    ("Parramatta", "NSW", "2150"), ("Newtown", "NSW", "2042"), ("Chatswood", "NSW", "2067"),
    ("Wollongong", "NSW", "2500"), ("Fitzroy", "VIC", "3065"), ("Geelong", "VIC", "3220"),
    ("Richmond", "VIC", "3121"), ("Ballarat Central", "VIC", "3350"), ("Fortitude Valley", "QLD", "4006"),
    ("Southport", "QLD", "4215"), ("Toowoomba City", "QLD", "4350"), ("Subiaco", "WA", "6008"),
    ("Fremantle", "WA", "6160"), ("Glenelg", "SA", "5045"), ("Norwood", "SA", "5067"),
    ("Sandy Bay", "TAS", "7005"), ("Braddon", "ACT", "2612"), ("Parap", "NT", "0820"),
)
BUSINESS_WORDS = (
    "Harbour", "Southern", "Coastal", "Bluegum", "Ironbark", "Summit", "Red Gum", "Outback", "Silverwater",
    "Kingfisher", "Eastside", "Northern Star", "Golden Wattle", "Riverbend", "Sunrise", "Greenfield",
)
BUSINESS_SUFFIXES = ("Pty Ltd", "Pty. Ltd.", "& Co", "Group", "Services", "Trading Co", "Pty Ltd")

# ABN check: subtract 1 from the first digit, weight the digits, the sum is a multiple of 89.
ABN_WEIGHTS = (10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)


@dataclass(frozen=True)
class Address:
    street: str
    suburb: str
    state: str
    postcode: str

    @property
    def lines(self) -> list[str]:
        """As printed: street on one line, locality on the next."""
        return [self.street, f"{self.suburb} {self.state} {self.postcode}"]

    @property
    def text(self) -> str:
        """The ground truth form: one line, comma between street and locality."""
        return ", ".join(self.lines)


@dataclass(frozen=True)
class Party:
    name: str
    address: Address | None
    abn: str | None = None  # 11 digits
    phone: str | None = None
    email: str | None = None


def abn_is_valid(abn: str) -> bool:
    if len(abn) != 11 or not abn.isdigit() or abn[0] == "0":
        return False
    digits = [int(c) for c in abn]
    digits[0] -= 1
    return sum(d * w for d, w in zip(digits, ABN_WEIGHTS)) % 89 == 0


def abn(rng: random.Random) -> str:
    """A random 11-digit ABN that passes the checksum (about 1 in 89 candidates do)."""
    while True:
        candidate = str(rng.randint(10_000_000_000, 99_999_999_999))
        if abn_is_valid(candidate):
            return candidate


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"


def address(rng: random.Random) -> Address:
    number = str(rng.randint(1, 420))
    if rng.random() < 0.25:
        number = f"{rng.choice(('Unit', 'Suite', 'Shop'))} {rng.randint(1, 40)}, {number}"
    suburb, state, postcode = rng.choice(SUBURBS)
    return Address(f"{number} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}", suburb, state, postcode)


def phone(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"04{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)}"
    return f"(0{rng.choice('2378')}) {rng.randint(5000, 9999)} {rng.randint(1000, 9999)}"


def business(rng: random.Random, trade: str) -> Party:
    """A business of `trade` (e.g. 'Plumbing') with ABN, address and contact details."""
    words = rng.choice(BUSINESS_WORDS)
    name = f"{words} {trade} {rng.choice(BUSINESS_SUFFIXES)}"
    domain = words.lower().replace(" ", "") + trade.split()[0].lower()
    return Party(name, address(rng), abn(rng), phone(rng), f"accounts@{domain}.com.au")


def customer(rng: random.Random) -> Party:
    """A person or a small company being billed."""
    if rng.random() < 0.5:
        name = person_name(rng)
    else:
        name = f"{rng.choice(BUSINESS_WORDS)} {rng.choice(('Dental', 'Cafe', 'Legal', 'Builders', 'Motors'))} Pty Ltd"
    return Party(name, address(rng))


def day_between(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randint(0, (end - start).days))


def document_date(rng: random.Random) -> date:
    return day_between(rng, date(2023, 1, 1), date(2025, 6, 30))


def money(rng: random.Random, low: float, high: float, endings: tuple[int, ...] = ()) -> Decimal:
    """A random amount in [low, high]; with `endings` (cents) the cents are one of them (e.g. 95, 99)."""
    cents = rng.randint(round(low * 100), round(high * 100))
    if endings:
        cents = cents - cents % 100 + rng.choice(endings)
    return (Decimal(cents) / 100).quantize(CENT)
