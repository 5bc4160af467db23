"""The figures a run writes, each named in `config.figures` (`zoo.contract.FIGURES`), and the
plots of the sweep."""

import os

import jax
import numpy as np
from PIL import Image
from PIL import ImageDraw

import zoo
from zoo import training


def image_grid(images: np.ndarray, scale: int = 1, columns: int | None = None) -> Image.Image:
  """(n, H, W, C) floats in [0, 1] as a grid (near-square unless `columns` is given), each
  pixel `scale` pixels wide."""
  n, h, w, c = images.shape
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / columns))
  grid = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, c), np.float32)
  for i, image in enumerate(images):
    r, k = divmod(i, columns)
    grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = image
  pixels = (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
  image = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
  return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def density_panels(data: np.ndarray, samples: np.ndarray, size: int = 256) -> Image.Image:
  """2-D histograms of the first two dimensions: the data on the left, the model's samples on
  the right, on the same axes."""
  low, high = np.percentile(data[:, :2], [0.5, 99.5], axis=0)
  pad = 0.1 * (high - low)
  edges = [np.linspace(low[d] - pad[d], high[d] + pad[d], size + 1) for d in range(2)]

  def panel(points):
    counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=edges)
    counts = np.log1p(counts.T[::-1])
    return 1 - counts / max(counts.max(), 1e-9)

  gap = np.ones((size, 4))
  return Image.fromarray((np.hstack([panel(data), gap, panel(samples)]) * 255).astype(np.uint8))


DENSITY_SAMPLES = 10_000


def _display_scale(dataset):
  return max(1, 128 // dataset.example_shape[0])


def write_inpainting(
    workdir: str, model, variables, dataset, preprocessing, config, count: int = 8
) -> None:
  """inpainting.png (NICE section 5.2): for each mask (bottom half hidden; half the pixels
  hidden at random) three rows of `count` test images: the original, the observed part (hidden
  pixels grey) and the model's inpainting."""
  batch = next(zoo.data.eval_batches(dataset, preprocessing, "test", batch_size=count))
  x = batch["x"]
  rows = np.arange(x.shape[1])[None, :, None, None]
  masks = [
      np.broadcast_to(rows < x.shape[1] // 2, x.shape),
      training.stream_generator(config.seed, "inpainting").random(x.shape) < 0.5,
  ]
  inpaint = jax.jit(
      lambda v, x, observed: model.apply(
          v,
          x,
          observed,
          config.inpaint_steps,
          *preprocessing.value_range,
          method="inpaint",
          rngs={"sample": training.stream_key(config.seed, "inpainting")},
      )
  )
  shown = []
  for observed in masks:
    filled = np.asarray(inpaint(variables, x, observed))
    original = preprocessing.inverse(x)
    shown += [original, np.where(observed, original, 0.5), preprocessing.inverse(filled)]
  image_grid(np.concatenate(shown), scale=_display_scale(dataset), columns=count).save(
      os.path.join(workdir, "inpainting.png")
  )


def write_samples(workdir: str, model, variables, dataset, preprocessing, config) -> None:
  """samples.png: a grid of `num_images` images for images; for vectors, the data's density
  beside that of at least DENSITY_SAMPLES samples (fewer points would not show a density)."""
  rng = training.stream_key(config.seed, "samples")
  n = config.num_images if dataset.is_image else max(config.num_images, DENSITY_SAMPLES)
  samples = np.asarray(
      jax.device_get(
          jax.jit(lambda v: model.apply(v, n, method="sample", rngs={"sample": rng}))(variables)
      )
  )
  samples = preprocessing.inverse(samples)
  path = os.path.join(workdir, "samples.png")
  if dataset.is_image:
    images = samples.reshape(-1, *dataset.example_shape)
    image_grid(images, scale=_display_scale(dataset)).save(path)
  else:
    reference = dataset.read("test", np.arange(min(dataset.num_examples("test"), 10_000)))["x"]
    density_panels(reference, samples.reshape(len(samples), -1)).save(path)


def write_rows(path: str, rows, dataset) -> None:
  """A PNG of images laid out as `rows` holds them, (rows, columns, *example_shape)."""
  rows = np.asarray(jax.device_get(rows))
  image_grid(
      rows.reshape(-1, *dataset.example_shape), scale=_display_scale(dataset), columns=rows.shape[1]
  ).save(path)


TRAVERSAL_VALUES = np.linspace(-2.0, 2.0, 9)  # in prior standard deviations


def write_traversals(workdir: str, model, variables, dataset, preprocessing, config) -> None:
  """traversals.png: for the first test image, row d sweeps latent d over TRAVERSAL_VALUES
  while the others keep the image's posterior mean (`model.traverse`)."""
  batch = next(zoo.data.eval_batches(dataset, preprocessing, "test", batch_size=1))
  write_rows(
      os.path.join(workdir, "traversals.png"),
      jax.jit(lambda v, x: model.apply(v, x, TRAVERSAL_VALUES, method="traverse"))(
          variables, batch["x"]
      ),
      dataset,
  )


def write_decomposition(
    workdir: str, model, variables, dataset, preprocessing, config, per_code: int = 10
) -> None:
  """decomposition.png: one row per code (`model.decompose`), PixelCNN samples along it; as
  many rows as the model has clusters (at most 30) or 10 for a continuous code."""
  num_codes = min(model.num_clusters or 10, 30)
  del preprocessing  # the PixelCNN's samples are pixels already
  write_rows(
      os.path.join(workdir, "decomposition.png"),
      jax.jit(
          lambda v: model.apply(
              v,
              num_codes,
              per_code,
              method="decompose",
              rngs={"sample": training.stream_key(config.seed, "decomposition")},
          )
      )(variables),
      dataset,
  )


def write_layer_grids(
    workdir: str, model, variables, dataset, preprocessing, config, size: int = 8
) -> None:
  """layer_<l>.png for each code z_l of a model with codes at several depths (VLAE): a
  `size` x `size` grid of p(x | z) means in which z_l alone changes along each row."""
  del preprocessing  # the means are pixel probabilities already
  for layer in range(len(model.latent_dims)):
    grid = jax.jit(
        lambda v, layer=layer: model.apply(
            v,
            layer,
            size,
            size,
            method="layer_grid",
            rngs={"sample": training.stream_key(config.seed, "layer_grids")},
        )
    )(variables)
    write_rows(os.path.join(workdir, f"layer_{layer + 1}.png"), grid, dataset)


WRITERS = {
    "samples": write_samples,
    "layer_grids": write_layer_grids,
    "decomposition": write_decomposition,
    "traversals": write_traversals,
    "inpainting": write_inpainting,
}  # the keys of zoo.contract.FIGURES


def write_figures(workdir: str, model, variables, dataset, preprocessing, config) -> None:
  """Every figure `config.figures` names, into `workdir` (made if need be)."""
  os.makedirs(workdir, exist_ok=True)
  for name in config.figures:
    WRITERS[name](workdir, model, variables, dataset, preprocessing, config)


COLOURS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#000000",
    "#dbdb8d",
    "#9edae5",
]  # tab20's order


def line_plot(series: dict, path: str, y_label: str, size=(900, 520)) -> None:
  """Lines of {label: (steps, values)} on shared axes, a legend at the right, as a PNG."""
  width, height = size
  left, right, top, bottom = 70, 250, 20, 40
  image = Image.new("RGB", size, "white")
  draw = ImageDraw.Draw(image)
  points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if np.isfinite(y)]
  if not points:
    image.save(path)
    return
  x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
  y_low, y_high = np.percentile([p[1] for p in points], [2, 100])
  x_span, y_span = max(x_high - x_low, 1), max(y_high - y_low, 1e-9)

  def at(x, y):
    y = min(max(y, y_low), y_high)
    return (
        left + (x - x_low) / x_span * (width - left - right),
        height - bottom - (y - y_low) / y_span * (height - top - bottom),
    )

  draw.rectangle([left, top, width - right, height - bottom], outline="black")
  for fraction in (0, 0.5, 1):
    y = y_low + fraction * y_span
    draw.text((5, at(x_low, y)[1] - 6), f"{y:.3g}", fill="black")
    x = x_low + fraction * x_span
    draw.text((at(x, y_low)[0] - 15, height - bottom + 8), f"{x:.0f}", fill="black")
  draw.text((5, 2), y_label, fill="black")
  draw.text((width - right - 30, height - 18), "step", fill="black")
  for i, (label, (xs, ys)) in enumerate(series.items()):
    colour = COLOURS[i % len(COLOURS)]
    line = [at(x, y) for x, y in zip(xs, ys) if np.isfinite(y)]
    if len(line) > 1:
      draw.line(line, fill=colour, width=2)
    draw.line(
        [(width - right + 10, top + 10 + 16 * i), (width - right + 30, top + 10 + 16 * i)],
        fill=colour,
        width=3,
    )
    draw.text((width - right + 36, top + 4 + 16 * i), label, fill="black")
  image.save(path)
