"""Joint deblurring and denoising as a nested problem, on the shared restoration toolkit (docs/tutorial_restoration_task.md)."""
