"""The ranking stage: candidates from several sources, ordered by a learned TFRS ranking model.

Retrieval alone ranks by one signal. On real retail data the best single signals are co-purchase
(what is bought with what the client bought) and recent popularity, and neither wins everywhere:
the strongest teams gather candidates from several sources and learn how to order them. Here:

* candidates: the co-purchase neighbours of the client's purchases (`CoPurchase`), the region's
  and the client's country's recent best-sellers, the two-tower's nearest products, and the
  products the client last looked at;
* features of each (client, candidate) pair, all computable from what the online store holds
  (the client's last purchases and last products seen, activity counts and country; the
  product's popularity): co-purchase score (plain, recency-weighted, strongest link to the last
  purchases), the product's popularity over 7 and 30 days and its trend, its share of recent
  sales in the client's country, the client's history length, yearly purchases and days since
  the last, the two-tower's opinion (`Retrieved`: its score as a z-score over the client's whole
  catalog and the candidate's place in the tower's list), and what the client's own lists say
  about the candidate: the share of them in its maison (loyalty decides where a client shops),
  its price against theirs, and how often the client just saw it. The last products seen
  arrive in real time (`POST /events`), so a client's views move the ranking at once;
* a small network scores each pair; trained listwise (softmax over a client's candidates, the
  products bought in the label weeks as targets) with `tfrs.tasks.Ranking`.

Clients without history are not ranked: they get recent popularity, which is what they buy.
Training and serving build features with the same functions (`Clients`, `Context`, `features`),
so an online answer is the offline answer for the same feature values.
"""

from atelier.models.recommend.ranking.context import POPULARITY, Clients, Context
from atelier.models.recommend.ranking.learn import LIST_BLOCK, Lists, Scorer, fit, ranked_scores, score, training_lists
from atelier.models.recommend.ranking.pairs import FEATURES, FEATURES_V1, features
from atelier.models.recommend.ranking.sources import candidates, prepare
from atelier.models.recommend.ranking.stage import Stage, load_stage, save_stage
from atelier.models.recommend.ranking.tower import FROM_TOWER, Retrieved, TowerView, tower_lists

__all__ = [
    "FEATURES", "FEATURES_V1", "FROM_TOWER", "LIST_BLOCK", "POPULARITY", "Clients", "Context", "Lists", "Retrieved", "Scorer",
    "Stage", "TowerView", "candidates", "features", "fit", "load_stage", "prepare", "ranked_scores", "save_stage", "score",
    "tower_lists", "training_lists",
]
