"""Generative recommenders over semantic IDs (SIDs): the token layout (`sid.SIDVocab`), a
TIGER-style decoder-only recommender (`tiger`) and NEZHA (`nezha`: one backbone pass + an MTP
head); `recommender`: both as registry models over the next-item batch ('tiger', 'nezha'). Decoding lives in `jaxrec.generate.nezha`."""

from jaxrec.models.generative.nezha import NEZHA, MTPHead, make_nezha, nezha_loss
from jaxrec.models.generative.recommender import (
           NEZHARecommender,
           SIDRecommender,
           TIGERRecommender,
)
from jaxrec.models.generative.sid import SIDVocab, sid_prompts
from jaxrec.models.generative.tiger import (
           TIGER,
           make_tiger,
           prompt_positions,
           tiger_loss,
)

__all__ = ["MTPHead", "NEZHA", "NEZHARecommender", "SIDRecommender", "SIDVocab", "TIGER", "TIGERRecommender", "make_nezha",
           "make_tiger", "nezha_loss", "prompt_positions", "sid_prompts", "tiger_loss"]
