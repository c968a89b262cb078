from .scale_distill_loss import KD_MODES, ScaleDistillLoss

__all__ = ['KD_MODES', 'ScaleDistillLoss']
