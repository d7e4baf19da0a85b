"""Mask countries, nationalities and regions of origin before a classifier sees text.

Why: trained on notes where FGM, forced-marriage and trafficking cases often name a
country, a bag-of-words model learns "Somalia" or "Pakistani" as evidence in itself
(the evaluation notebook measured it). A family's origin is not a safeguarding
indicator; what matters is the behaviour around it (a long trip for a "celebration",
a passport taken). So classifiers see ``ORIGINPLACE`` instead of the name, in training
and at prediction alike. The lexicons never use origin alone either (lexicons/*.yml).
The note text, the evidence offsets and the highlights are unchanged: masking is
only on the classifier's copy of each sentence.
"""

from __future__ import annotations

import re

# Countries and nationalities (and a few regions/cities often written as origins).
_NAMES = """
afghanistan afghan albania albanian algeria algerian angola angolan bangladesh bangladeshi
benin beninese bosnia bosnian brazil brazilian bulgaria bulgarian burkina burkinabe cameroon
cameroonian chad chadian china chinese colombia colombian congo congolese djibouti djiboutian
egypt egyptian eritrea eritrean ethiopia ethiopian gambia gambian ghana ghanaian guinea guinean
india indian indonesia indonesian iran iranian iraq iraqi ivory jamaica jamaican jordan
jordanian kenya kenyan kurdistan kurdish kurd kurds kuwait kuwaiti lebanon lebanese liberia
liberian libya libyan lithuania lithuanian malaysia malaysian mali malian mauritania mauritanian
morocco moroccan nepal nepalese niger nigeria nigerian oman omani pakistan pakistani palestine
palestinian philippines filipino poland polish qatar romania romanian russia russian rwanda
rwandan saudi senegal senegalese sierra leone leonean somalia somali somaliland sudan sudanese
syria syrian tanzania tanzanian togo togolese tunisia tunisian turkey turkish uganda ugandan
ukraine ukrainian vietnam vietnamese yemen yemeni zambia zambian zimbabwe zimbabwean albanians
mirpur mirpuri punjab punjabi sylhet sylheti kashmir kashmiri hargeisa mogadishu khartoum lagos
freetown conakry asmara addis cairo islamabad lahore karachi dhaka hanoi tirana kabul baghdad
ireland irish spain spanish france french italy italian portugal portuguese germany german
greece greek scotland scottish wales welsh england english britain british america american
usa canada canadian australia australian europe european africa african asia asian arab arabic
caribbean latvia latvian slovakia slovak czech hungary hungarian roma gypsy traveller travellers
""".split()
_MULTI = ["sierra leone", "ivory coast", "burkina faso", "south sudan", "saudi arabia", "sri lanka",
          "sri lankan", "the gambia", "guinea-bissau", "middle east", "east africa", "west africa",
          "north africa", "horn of africa", "south asia", "addis ababa", "eastern europe", "back home"]
_PATTERN = re.compile(
    r"\b(?:" + "|".join(re.escape(m) for m in sorted(_MULTI, key=len, reverse=True) if m != "back home")
    + "|" + "|".join(re.escape(w) for w in sorted(set(_NAMES), key=len, reverse=True)) + r")(?:'s)?\b",
    re.IGNORECASE,
)
PLACEHOLDER = "ORIGINPLACE"


# Words any match must contain: a cheap set check skips the large regex for the
# sentences (most of them) that name no place.
_FIRST_WORDS = frozenset(_NAMES) | {m.split()[0].split("-")[0] for m in _MULTI} - {"the", "back"}
_WORD = re.compile(r"[a-z]+")


def mask_origin(text: str) -> str:
    """Replace country, nationality and origin-region names with a placeholder word."""
    if _FIRST_WORDS.isdisjoint(_WORD.findall(text.lower())):
        return text
    return _PATTERN.sub(PLACEHOLDER, text)
