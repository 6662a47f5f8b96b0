"""Sequential recommenders over item-id histories (`jaxrec.data.sequential`): SASRec (`sasrec`)."""

from jaxrec.models.seq.sasrec import SASRec

__all__ = ["SASRec"]
