"""What a run makes besides its test metrics, each declared once as an `Output` with one
signature: the scores `config.scores` names (added to the test metrics) and the figures
`config.figures` names (PNG files); and the plots of the sweep."""

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

import zoo
from experiments import feed
from zoo import contract
from zoo import errors
from zoo import evaluation
from zoo import fitting
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


FONT_SIZE = 14


def labelled(
    image: Image.Image,
    title: str,
    rows: list[str] = (),
    columns: list[str] = (),
    cell: tuple[int, int] = (0, 0),
    footer: str = "",
) -> Image.Image:
  """`image` with a title above it, and where given a label left of each of its rows and above
  each of its columns (`cell`: (height, width) of a row and a column, from the image's edge, as
  `image_grid` lays them out), and a footer line below."""
  font = ImageFont.load_default(size=FONT_SIZE)
  line = FONT_SIZE + 6
  left = int(max([font.getlength(r) for r in rows], default=-8)) + 8
  top = line * (2 if columns else 1)
  width = max(left + image.width, int(font.getlength(title)) + 10, int(font.getlength(footer)) + 10)
  out = Image.new("RGB", (width, top + image.height + (line if footer else 0)), "white")
  out.paste(image.convert("RGB"), (left, top))
  draw = ImageDraw.Draw(out)
  draw.text((5, 3), title, fill="black", font=font)
  for i, text in enumerate(rows):
    draw.text((4, top + (i + 0.5) * cell[0]), text, fill="black", font=font, anchor="lm")
  for j, text in enumerate(columns):
    draw.text((left + (j + 0.5) * cell[1], line + 3), text, fill="black", font=font, anchor="mt")
  if footer:
    draw.text((5, top + image.height + 3), footer, fill="black", font=font)
  return out


def density_panels(data: np.ndarray, samples: np.ndarray, size: int = 256) -> Image.Image:
  """2-D histograms of the first two dimensions, titled: the data on the left, the model's
  samples on the right, on the same axes, the data's range (its 0.5-99.5 percentiles and a
  tenth more each side); the share of samples outside that frame is said under them."""
  low, high = np.percentile(data[:, :2], [0.5, 99.5], axis=0)
  pad = 0.1 * (high - low)
  edges = [np.linspace(low[d] - pad[d], high[d] + pad[d], size + 1) for d in range(2)]

  def panel(points):
    counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=edges)
    counts = np.log1p(counts.T[::-1])
    return 1 - counts / max(counts.max(), 1e-9)

  inside = np.all(
      [(samples[:, d] >= edges[d][0]) & (samples[:, d] <= edges[d][-1]) for d in range(2)], 0
  )
  gap = np.ones((size, 4))
  image = Image.fromarray((np.hstack([panel(data), gap, panel(samples)]) * 255).astype(np.uint8))
  return labelled(
      image,
      "density of the first two dimensions (log counts)",
      columns=[f"test data ({len(data)})", f"model samples ({len(samples)})"],
      cell=(size, size + 4),
      footer=(
          f"x1 in [{edges[0][0]:.3g}, {edges[0][-1]:.3g}], x2 in [{edges[1][0]:.3g}, "
          f"{edges[1][-1]:.3g}]; {1 - inside.mean():.1%} of samples outside"
      ),
  )


DENSITY_SAMPLES = 10_000


def _display_scale(dataset):
  return max(1, 128 // dataset.example_shape[0])


@dataclasses.dataclass(frozen=True)
class Subject:
  """What a run's outputs are made from."""

  model: contract.Model
  dataset: zoo.data.Dataset
  preprocessing: Any
  config: ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Output:
  """A score or a figure that a config may name, declared once.

  Attributes:
    method: the model's method (`zoo.contract`) that it calls.
    make: (subject, one replica's variables, that replica's seed) -> a score's {metric: value},
      or a figure's {file name: image}.
    possible: whether the subject's model and data can give it; None: whenever the model has
      `method`.
    needs: what `possible` asks, for the message when it does not hold.
  """

  method: str
  make: Callable[[Subject, dict, int], dict]
  possible: Callable[[Subject], bool] | None = None
  needs: str = ""


def inpainting(subject: Subject, variables, seed: int, count: int = 8) -> dict:
  """inpainting.png (NICE section 5.2): for each mask (bottom half hidden; half the pixels
  hidden at random) three rows of `count` test images: the original, the observed part (hidden
  pixels grey) and the model's inpainting."""
  model, dataset, preprocessing, config = _parts(subject)
  batch = next(zoo.data.eval_batches(dataset, preprocessing, "test", batch_size=count))
  x = batch["x"]
  rows = np.arange(x.shape[1])[None, :, None, None]
  masks = [
      np.broadcast_to(rows < x.shape[1] // 2, x.shape),
      training.stream_generator(seed, "inpainting").random(x.shape) < 0.5,
  ]
  inpaint = jax.jit(
      lambda v, x, observed: model.apply(
          v,
          x,
          observed,
          config.inpaint_steps,
          *preprocessing.value_range,
          method="inpaint",
          rngs={"sample": training.stream_key(seed, "inpainting")},
      )
  )
  shown = []
  for observed in masks:
    filled = np.asarray(inpaint(variables, x, observed))
    original = preprocessing.inverse(x)
    shown += [original, np.where(observed, original, 0.5), preprocessing.inverse(filled)]
  rows = []
  for hidden in ("bottom half", "half the pixels at random"):
    rows += ["test image", f"{hidden} hidden (grey)", "inpainted by the model"]
  return {
      "inpainting.png": labelled(
          image_grid(np.concatenate(shown), scale=_display_scale(dataset), columns=count),
          f"inpainting: {config.inpaint_steps} steps of projected stochastic gradient ascent"
          " on log p",
          rows=rows,
          cell=_cell(dataset),
      )
  }


def samples(subject: Subject, variables, seed: int) -> dict:
  """samples.png: a grid of `num_images` images for images; for vectors, the data's density
  beside that of at least DENSITY_SAMPLES samples (fewer points would not show a density)."""
  model, dataset, preprocessing, config = _parts(subject)
  rng = training.stream_key(seed, "samples")
  n = config.num_images if dataset.is_image else max(config.num_images, DENSITY_SAMPLES)
  drawn = np.asarray(
      jax.device_get(
          jax.jit(lambda v: model.apply(v, n, method="sample", rngs={"sample": rng}))(variables)
      )
  )
  drawn = preprocessing.inverse(drawn)
  if dataset.is_image:
    images = drawn.reshape(-1, *dataset.example_shape)
    return {
        "samples.png": labelled(
            image_grid(images, scale=_display_scale(dataset)),
            f"{len(images)} samples from the model",
        )
    }
  reference = dataset.read("test", np.arange(min(dataset.num_examples("test"), 10_000)))["x"]
  return {"samples.png": density_panels(reference, drawn.reshape(len(drawn), -1))}


def _cell(dataset) -> tuple[int, int]:
  """(height, width) of an image of `dataset` in `image_grid`'s layout, with its border."""
  scale = _display_scale(dataset)
  return (dataset.example_shape[0] + 1) * scale, (dataset.example_shape[1] + 1) * scale


def rows_image(rows, dataset) -> Image.Image:
  """Images laid out as `rows` holds them, (rows, columns, *example_shape)."""
  rows = np.asarray(jax.device_get(rows))
  return image_grid(
      rows.reshape(-1, *dataset.example_shape), scale=_display_scale(dataset), columns=rows.shape[1]
  )


TRAVERSAL_VALUES = np.linspace(-2.0, 2.0, 9)  # in prior standard deviations
KL_EXAMPLES = 256  # test images over which each latent's KL is averaged for its row's label


def traversals(subject: Subject, variables, seed: int) -> dict:
  """traversals.png: for the first test image, row d sweeps latent d over TRAVERSAL_VALUES
  while the others keep the image's posterior mean (`model.traverse`); each row labelled with
  its latent's KL from the standard normal prior, the mean over KL_EXAMPLES test images (an
  unused latent's is near 0)."""
  model, dataset, preprocessing, _ = _parts(subject)
  batch = next(zoo.data.eval_batches(dataset, preprocessing, "test", batch_size=KL_EXAMPLES))
  rows = jax.jit(lambda v, x: model.apply(v, x, TRAVERSAL_VALUES, method="traverse"))(
      variables, batch["x"][:1]
  )
  mean, log_var = jax.device_get(
      jax.jit(lambda v, x: model.apply(v, x, method="encode"))(variables, batch["x"])
  )
  kl = np.mean(0.5 * (mean**2 + np.exp(log_var) - log_var - 1), axis=0)  # KL(q || N(0, 1))
  return {
      "traversals.png": labelled(
          rows_image(rows, dataset),
          "latent traversals of a test image: row d sets z_d, the rest its posterior mean",
          rows=[f"z_{d + 1}  KL {k:.2f}" for d, k in enumerate(kl)],
          columns=[f"{v:+g}" for v in TRAVERSAL_VALUES],
          cell=_cell(dataset),
          footer=f"columns: z_d in prior std; KL in nats, mean over {len(mean)} test images",
      )
  }


def decomposition(subject: Subject, variables, seed: int, per_code: int = 10) -> dict:
  """decomposition.png: one row per code (`model.decompose`), PixelCNN samples along it (pixels
  already); as many rows as the model has clusters (at most 30) or 10 for a continuous code."""
  model = subject.model
  num_codes = min(model.num_clusters or 10, 30)
  rows = jax.jit(
      lambda v: model.apply(
          v,
          num_codes,
          per_code,
          method="decompose",
          rngs={"sample": training.stream_key(seed, "decomposition")},
      )
  )(variables)
  kind = "cluster" if model.num_clusters else "code"
  return {
      "decomposition.png": labelled(
          rows_image(rows, subject.dataset),
          f"PixelCNN samples given one {kind} a row"
          + (" (the categorical code)" if model.num_clusters else " drawn from the prior"),
          rows=[f"{kind} {k + 1}" for k in range(num_codes)],
          cell=_cell(subject.dataset),
      )
  }


def layer_grids(subject: Subject, variables, seed: int, size: int = 8) -> dict:
  """layer_<l>.png for each code z_l of a model with codes at several depths (VLAE): a
  `size` x `size` grid of p(x | z) means (pixel probabilities already) in which z_l alone
  changes along each row."""
  model = subject.model
  grids = {}
  for layer in range(len(model.latent_dims)):
    grid = jax.jit(
        lambda v, layer=layer: model.apply(
            v,
            layer,
            size,
            size,
            method="layer_grid",
            rngs={"sample": training.stream_key(seed, "layer_grids")},
        )
    )(variables)
    grids[f"layer_{layer + 1}.png"] = labelled(
        rows_image(grid, subject.dataset),
        f"z_{layer + 1} changes along each row, the other layers' noise fixed along it"
        " (means of p(x | z))",
    )
  return grids


def _parts(subject: Subject):
  return subject.model, subject.dataset, subject.preprocessing, subject.config


FIGURES = {
    "samples": Output("sample", samples),
    "layer_grids": Output("layer_grid", layer_grids),
    "decomposition": Output("decompose", decomposition),
    "traversals": Output("traverse", traversals),
    "inpainting": Output(
        "inpaint",
        inpainting,
        lambda s: s.dataset.is_image and s.preprocessing.elementwise,
        "image data preprocessed pixel by pixel (not zca)",
    ),
}
SCORES = {
    "disentanglement": Output(
        "encode",
        lambda s, variables, seed: evaluation.disentanglement_metrics(
            s.model, variables, s.dataset.ground_truth, s.config.disentanglement, seed
        ),
        lambda s: s.dataset.ground_truth is not None,
        "a data set with ground-truth factors (dsprites)",
    ),
    "clustering": Output(
        "encode",
        lambda s, variables, seed: evaluation.clustering_metrics(
            s.model, variables, s.dataset, s.preprocessing, s.config
        ),
        lambda s: s.model.num_clusters > 0 and bool(s.dataset.num_classes),
        "a categorical code (num_clusters > 0) and labelled data",
    ),
}
DECLARED = {"figures": FIGURES, "scores": SCORES}


def check(name: str, subject: Subject) -> None:
  """Reject, with one line naming the field, a figure or score of the subject's config that its
  model (the registry's `name`) or its data cannot give."""
  for field, declared in DECLARED.items():
    named = subject.config[field]
    for output in named:
      if output not in declared:
        raise errors.UserError(
            f"config.{field} names {output!r}; the {field} are {', '.join(declared)}"
        )
      method = declared[output].method
      if not contract.implements(subject.model, method):
        raise errors.UserError(
            f"config.{field} names {output!r}, which needs the model's `{method}`; "
            f"{name} has none"
        )
      if declared[output].possible and not declared[output].possible(subject):
        raise errors.UserError(
            f"config.{field} names {output!r}, which needs {declared[output].needs}; drop it "
            f"with --config.{field}=" + ",".join(o for o in named if o != output)
        )


def scores(subject: Subject, variables, seed: int) -> dict:
  """The metrics of every score the subject's config names, for one replica."""
  return {
      metric: value
      for name in subject.config.scores
      for metric, value in SCORES[name].make(subject, variables, seed).items()
  }


def write_figures(directory: str, subject: Subject, variables, seed: int) -> dict:
  """Every figure the subject's config names, into `directory` (made if need be); the figures,
  {file name: image}."""
  os.makedirs(directory, exist_ok=True)
  written = {}
  for name in subject.config.figures:
    for file_name, image in FIGURES[name].make(subject, variables, seed).items():
      image.save(os.path.join(directory, file_name))
      written[file_name] = image
  return written


def redraw(workdir: str, replica: int, out: str, figures=None) -> dict:
  """Write the figures of replica `replica` of the finished run in `workdir` into `out`, drawn
  from its variables as `zoo.load` gives them and its seed's streams (replica 0's are the run's
  own); the figures, {file name: image}."""
  model, variables, config = zoo.load(workdir, replica)
  prepared = fitting.prepare(config)
  dataset = feed.load_data(prepared.config)
  finished, preprocessing = fitting.fitted_data(prepared, dataset, training.Devices.all())
  if figures is not None:
    finished.figures = tuple(figures)
  subject = Subject(model, dataset, preprocessing, finished)
  check(config.model_name, subject)
  return write_figures(out, subject, variables, prepared.seeds[replica])


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
  font = ImageFont.load_default(size=FONT_SIZE - 1)
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
    draw.text((5, at(x_low, y)[1] - 6), f"{y:.3g}", fill="black", font=font)
    x = x_low + fraction * x_span
    draw.text((at(x, y_low)[0] - 15, height - bottom + 8), f"{x:.0f}", fill="black", font=font)
  draw.text((5, 2), y_label, fill="black", font=font)
  draw.text((width - right - 30, height - 18), "step", fill="black", font=font)
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
    draw.text((width - right + 36, top + 4 + 16 * i), label, fill="black", font=font)
  image.save(path)
