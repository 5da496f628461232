"""Domain adaptation: learn a target domain from its unlabelled data.

Classic methods on feature vectors (scikit-learn estimators) are in ``adapt.shallow``.
"""
