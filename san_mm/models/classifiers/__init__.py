from .san_classifier import SANClassifier

__all__ = ['SANClassifier']
