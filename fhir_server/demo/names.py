"""Chinese personal and place names for the synthetic county.

Family names are drawn with weights close to their share of the population (rounded
percentages from the Ministry of Public Security's 2020 surname report; the tail is
flattened). Given names have one or two characters, from character pools typical of
people born 1935-1990. Place names (townships, villages) combine two characters from
pools common in the place names of central and southern China.
"""

from __future__ import annotations

import random
from itertools import accumulate

__all__ = ["FAMILY_NAMES", "person_name", "place_names"]

# (family name, approximate share of the population in per cent)
FAMILY_NAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.1), ("李", 7.0), ("张", 6.6), ("刘", 5.4), ("陈", 4.6), ("杨", 3.1),
    ("黄", 2.4), ("赵", 2.0), ("吴", 2.0), ("周", 1.9), ("徐", 1.4), ("孙", 1.3),
    ("马", 1.2), ("朱", 1.2), ("胡", 1.1), ("郭", 1.1), ("何", 1.1), ("林", 1.0),
    ("罗", 1.0), ("高", 1.0), ("郑", 0.9), ("梁", 0.8), ("谢", 0.7), ("宋", 0.7),
    ("唐", 0.7), ("许", 0.7), ("韩", 0.7), ("邓", 0.6), ("冯", 0.6), ("曹", 0.6),
    ("彭", 0.6), ("曾", 0.6), ("肖", 0.5), ("田", 0.5), ("董", 0.5), ("潘", 0.5),
    ("袁", 0.5), ("蔡", 0.5), ("蒋", 0.5), ("余", 0.5), ("于", 0.5), ("杜", 0.4),
    ("叶", 0.4), ("程", 0.4), ("魏", 0.4), ("苏", 0.4), ("吕", 0.4), ("丁", 0.4),
    ("任", 0.4), ("卢", 0.4), ("姚", 0.4), ("沈", 0.4), ("钟", 0.4), ("姜", 0.4),
    ("崔", 0.3), ("谭", 0.3), ("陆", 0.3), ("范", 0.3), ("汪", 0.3), ("廖", 0.3),
    ("石", 0.3), ("金", 0.3), ("韦", 0.3), ("贾", 0.3), ("夏", 0.3), ("付", 0.3),
    ("方", 0.3), ("邹", 0.3), ("熊", 0.3), ("白", 0.3), ("孟", 0.3), ("秦", 0.3),
    ("邱", 0.3), ("侯", 0.3), ("江", 0.3), ("尹", 0.3), ("薛", 0.2), ("闫", 0.2),
    ("段", 0.2), ("雷", 0.2), ("龙", 0.2), ("黎", 0.2), ("史", 0.2), ("陶", 0.2),
    ("贺", 0.2), ("毛", 0.2), ("郝", 0.2), ("顾", 0.2), ("龚", 0.2), ("邵", 0.2),
    ("万", 0.2), ("覃", 0.2), ("武", 0.2), ("钱", 0.2), ("戴", 0.2), ("严", 0.2),
    ("莫", 0.2), ("孔", 0.2), ("向", 0.2), ("常", 0.2), ("汤", 0.2), ("康", 0.2),
    ("欧阳", 0.05), ("司马", 0.01), ("诸葛", 0.01), ("上官", 0.01),
)
_FAMILY = tuple(name for name, _ in FAMILY_NAMES)
_FAMILY_CUM = tuple(accumulate(share for _, share in FAMILY_NAMES))

# Given-name characters: (first of two, second of two or a single-character name).
_GIVEN = {
    "male": (
        "建国志永德明文春海振学立光新长金家兴中世福桂宝庆发树保连玉贵",
        "华强军平明林生成忠福东良荣贵才伟民山峰刚清安祥斌辉武全勇义杰",
    ),
    "female": (
        "秀玉桂淑丽春金美翠凤红爱冬小素月雪彩菊桃兰艳玲银巧荷",
        "英兰芳珍梅华琴萍霞娟莲云荣花芬凤香秀琼菊娥平芝敏群",
    ),
}

_PLACE_FIRST = "桃李杨柳石龙凤黄白马大小高新东西南北上下青红金双三五中长田沙竹花梅松茶枫柏樟荷"
_PLACE_SECOND = "溪坪冲塘湾山岭桥坡源园口湖江河坝铺寨庄洲林峰田岗垅坳市滩"


def person_name(rng: random.Random, sex: str) -> tuple[str, str]:
    """A (family, given) pair; ``sex`` is ``"male"`` or ``"female"``."""
    family = rng.choices(_FAMILY, cum_weights=_FAMILY_CUM)[0]
    first, second = _GIVEN[sex]
    if rng.random() < 0.3:
        return family, rng.choice(second)
    return family, rng.choice(first) + rng.choice(second)


def place_names(rng: random.Random, count: int, taken: set[str] | None = None) -> list[str]:
    """``count`` distinct two-character place names, none in ``taken`` (which is updated)."""
    taken = set() if taken is None else taken
    capacity = len(_PLACE_FIRST) * len(_PLACE_SECOND)
    if count + len(taken) > capacity:
        raise ValueError(f"at most {capacity} distinct place names")
    names: list[str] = []
    while len(names) < count:
        name = rng.choice(_PLACE_FIRST) + rng.choice(_PLACE_SECOND)
        if name[0] != name[1] and name not in taken:
            taken.add(name)
            names.append(name)
    return names
