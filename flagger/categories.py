"""The safeguarding taxonomy: twelve category keys, in one place.

The keys are a contract shared by the lexicons, the classifiers, the result schema,
the HTTP service and the review store. Definitions are written in our own words from
the policy texts in ``shared/seeds`` (cited by section) and public guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

SEED_MAIN = "Missing Link safeguarding children and young people policy (seed 001)"
SEED_INDEPENDENCE = "Independence Project safeguarding policy (seed 004)"
SEED_FAMILY = "Family services safeguarding statement (seed 002)"


@dataclass(frozen=True)
class Category:
    key: str
    name: str
    definition: str
    sources: tuple[str, ...]


CATEGORIES: dict[str, Category] = {
    c.key: c
    for c in (
        Category(
            "neglect",
            "Neglect",
            "Persistent failure to meet a child's basic physical or psychological needs "
            "(food, clothing, shelter, hygiene, supervision, medical or dental care, "
            "emotional warmth), likely to impair health or development.",
            (f"{SEED_MAIN} §5.1.3", SEED_INDEPENDENCE),
        ),
        Category(
            "cse",
            "Child sexual exploitation",
            "A child is coerced, manipulated or deceived into sexual activity in exchange "
            "for something they want or need, or for the gain of the abuser, including "
            "grooming in person or online; it can look consensual to the child.",
            (f"{SEED_MAIN} §5.2.6-5.2.7",),
        ),
        Category(
            "county_lines",
            "County lines / child criminal exploitation",
            "A child is used to carry, hold or sell drugs or money, often across areas, "
            "controlled through debt, violence or reward; includes cuckooing (taking over "
            "a vulnerable person's home).",
            (f"{SEED_MAIN} §5.2.10",),
        ),
        Category(
            "radicalisation",
            "Radicalisation",
            "A person comes to support terrorism or extremist ideology of any kind, "
            "through contact with people or material; a Prevent concern.",
            (f"{SEED_MAIN} §5.2.9", SEED_INDEPENDENCE),
        ),
        Category(
            "fgm",
            "Female genital mutilation",
            "Any procedure to partially or totally remove or injure female genitalia for "
            "non-medical reasons, including the risk of a girl being taken abroad for it.",
            (f"{SEED_MAIN} §5.2.2",),
        ),
        Category(
            "physical_abuse",
            "Physical abuse",
            "Hitting, shaking, throwing, poisoning, burning, scalding, drowning, "
            "suffocating or otherwise causing physical harm, including fabricated or "
            "induced illness.",
            (f"{SEED_MAIN} §5.1.1",),
        ),
        Category(
            "sexual_abuse",
            "Sexual abuse",
            "Forcing or enticing a child into sexual activities, contact or non-contact "
            "(images, watching sexual acts), outside an exploitation context.",
            (f"{SEED_MAIN} §5.1.2",),
        ),
        Category(
            "emotional_abuse",
            "Emotional abuse",
            "Persistent emotional maltreatment with severe effects on emotional "
            "development: belittling, rejecting, threatening, scapegoating, inappropriate "
            "expectations, or seeing or hearing the ill-treatment of another.",
            (f"{SEED_MAIN} §5.1.4",),
        ),
        Category(
            "domestic_abuse",
            "Domestic abuse",
            "Abusive behaviour between people aged 16 or over who are personally "
            "connected, in the household: physical, sexual, economic, psychological, "
            "emotional abuse and coercive or controlling behaviour.",
            (f"{SEED_MAIN} §5.2.1", SEED_FAMILY),
        ),
        Category(
            "forced_marriage",
            "Forced marriage and honour-based abuse",
            "A marriage without the full and free consent of one or both parties, or of "
            "a child, and abuse committed to protect or defend a family's 'honour'.",
            (f"{SEED_MAIN} §5.2.3-5.2.4",),
        ),
        Category(
            "trafficking",
            "Trafficking and modern slavery",
            "Recruiting, moving, harbouring or receiving a person for exploitation: forced "
            "labour, domestic servitude, criminal or sexual exploitation, cannabis farms.",
            (f"{SEED_MAIN} §5.2.8",),
        ),
        Category(
            "missing",
            "Missing from home, care or education",
            "A child goes missing from home or care, or is missing from education "
            "(unexplained long absence, taken off roll), a known risk sign for harm and "
            "exploitation.",
            (f"{SEED_MAIN} §5.4",),
        ),
    )
}

CATEGORY_KEYS: tuple[str, ...] = tuple(CATEGORIES)
FOCUS_CATEGORIES: tuple[str, ...] = ("neglect", "cse", "county_lines", "radicalisation", "fgm")


def is_category(key: str) -> bool:
    """Return True when ``key`` is one of the twelve category keys."""
    return key in CATEGORIES
