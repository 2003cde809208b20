"""A small table of first-name nicknames (English and German business contacts).

Why in the repository: the table is data the scorer needs offline and in the runner, it is short
enough to read in review, and a wrong entry costs little (a nickname level is one level among the
name's, with its own m/u). Each group lists the formal name first.
"""

from __future__ import annotations

__all__ = ["NICKNAME_GROUPS", "name_groups"]

NICKNAME_GROUPS: tuple[tuple[str, ...], ...] = (
    ("william", "bill", "billy", "will", "willy", "liam"),
    ("robert", "bob", "bobby", "rob", "robbie", "bert"),
    ("richard", "rick", "ricky", "rich", "dick"),
    ("james", "jim", "jimmy", "jamie"),
    ("john", "jack", "johnny", "jon"),
    ("elizabeth", "liz", "lizzy", "beth", "betty", "eliza", "lisa", "elisabeth", "elise"),
    ("margaret", "maggie", "meg", "peggy", "marge", "margarete", "grete"),
    ("katherine", "catherine", "kate", "kathy", "katie", "cathy", "katharina", "kathrin", "katja"),
    ("michael", "mike", "mikey", "mick", "micha"),
    ("thomas", "tom", "tommy", "thom"),
    ("christopher", "chris", "kit", "christoph"),
    ("christine", "christina", "chris", "tina", "chrissy"),
    ("daniel", "dan", "danny"),
    ("joseph", "joe", "joey", "josef", "sepp"),
    ("alexander", "alex", "sascha", "xander"),
    ("alexandra", "alex", "sandra", "sascha"),
    ("andrew", "andy", "drew", "andreas", "andi"),
    ("anthony", "tony", "anton", "toni"),
    ("benjamin", "ben", "benny"),
    ("charles", "charlie", "chuck", "chas", "karl", "carl"),
    ("edward", "ed", "eddie", "ted", "ned"),
    ("frederick", "fred", "freddy", "friedrich", "fritz"),
    ("jennifer", "jen", "jenny"),
    ("jessica", "jess", "jessie"),
    ("matthew", "matt", "matthias", "mathias"),
    ("nicholas", "nick", "nicky", "nikolaus", "klaus"),
    ("patricia", "pat", "patty", "trish"),
    ("patrick", "pat", "paddy"),
    ("peter", "pete"),
    ("rebecca", "becky", "becca"),
    ("samuel", "sam", "sammy"),
    ("samantha", "sam", "sammy"),
    ("stephen", "steven", "steve", "stefan", "steffen"),
    ("susan", "sue", "susie", "susanne", "susanna"),
    ("timothy", "tim", "timmy"),
    ("victoria", "vicky", "tori"),
    ("johannes", "hans", "jo", "johann", "hannes"),
    ("wolfgang", "wolf"),
    ("franziska", "franzi"),
    ("gabriele", "gabi", "gabriela"),
    ("barbara", "babs", "barbie"),
    ("deborah", "debbie", "deb"),
    ("jonathan", "jon", "jonny"),
    ("joshua", "josh"),
    ("maximilian", "max"),
    ("nathaniel", "nate", "nat"),
    ("philip", "phil", "philipp"),
    ("ronald", "ron", "ronnie"),
    ("theodore", "theo", "ted"),
    ("zachary", "zach", "zack"),
)

_GROUPS: dict[str, frozenset[int]] = {}
for _index, _group in enumerate(NICKNAME_GROUPS):
    for _name in _group:
        _GROUPS[_name] = _GROUPS.get(_name, frozenset()) | {_index}


def name_groups(first_name: str) -> frozenset[int]:
    """The nickname groups a normalised first name belongs to (empty when the table does not know it)."""
    return _GROUPS.get(first_name, frozenset())
