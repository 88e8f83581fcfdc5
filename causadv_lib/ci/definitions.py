"""The CI definitions as scores of rows of logits (or probabilities), and CI from reference and ablated rows.

A row's score under each definition of `DEFINITIONS` (`row_scores`); the CI of a removal is the
unablated row's reference score minus the ablated row's score (`finish`). Every path (closed form,
generic, naive) ends here, so the definitions are written once.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

#: the CI definitions (`causadv_lib.ci`'s docstring)
DEFINITIONS = ("probability", "log_probability", "logit", "authors")


def prob(logits, c):
    """p_c = exp(-log(sum_j exp(z_j - z_c))), computed alike in every row of a batch.

    Not ``1 / sum``: in a compiled graph TensorFlow turns that into an approximate reciprocal whose
    result depends on the row's position in the batch (0.99999994 in one row, 1.0 in another for the
    same logits); the softmax kernel has the same flaw. This form gives exactly 1.0 whenever the sum
    rounds to 1, so saturated removals have a CI of exactly 0 on every path.
    """
    zc = tf.gather(logits, c, batch_dims=1)
    return tf.exp(-tf.math.log(tf.reduce_sum(tf.exp(logits - zc[:, None]), axis=-1)))


def log_prob(logits, c):
    """log p_c = -log1p(sum_{j != c} exp(z_j - z_c)), stable and exact near p_c = 1.

    The same formula as `causadv_lib.logprob.log_prob` (numpy, float64: prototypes and confidence use
    it), here in TensorFlow and in the logits' dtype, inside the compiled CI graph.
    """
    zc = tf.gather(logits, c, batch_dims=1)
    hit = tf.one_hot(c, tf.shape(logits)[-1], on_value=True, off_value=False)
    d = tf.where(hit, tf.constant(-np.inf, logits.dtype), logits - zc[:, None])
    m = tf.reduce_max(d, axis=-1)
    return -tf.nn.softplus(m + tf.math.log(tf.reduce_sum(tf.exp(d - m[:, None]), axis=-1)))


def row_scores(definition, probs, logits, c):
    """(reference score, removal score) per row: CI = reference(unablated row) - removal(ablated row).

    From the logits where they are known (`prob`, `log_prob`), else from the model's probabilities.
    """
    if logits is None:
        if definition in ("logit", "log_probability"):
            raise ValueError(f"definition {definition!r} needs the logits")
        s = tf.gather(probs, c, batch_dims=1)
        return s, (tf.reduce_max(probs, axis=-1) if definition == "authors" else s)
    if definition == "probability":
        s = prob(logits, c)
        return s, s
    if definition == "authors":
        return prob(logits, c), prob(logits, tf.argmax(logits, axis=-1, output_type=tf.int32))
    s = tf.gather(logits, c, batch_dims=1) if definition == "logit" else log_prob(logits, c)
    return s, s


def finish(definition, probs, logits, target, unchanged, compare_outputs=False):
    """CI from (R, G, C) outputs (R rows per input, the last unablated) -> (ci (G, R-1), pred, prob, c).

    Uses the logits where known (then `probs` may be None). `unchanged` (R-1, G): removals that leave
    the tensor entering the rest of the network bit-identical (a dead channel); their CI is exactly 0
    by definition, which removes the last-bit noise a matrix product can add to a row depending on its
    position in the batch. `compare_outputs`: also treat bit-identical output rows as unchanged.
    """
    top = probs if logits is None else logits
    R, G = tf.shape(top)[0], tf.shape(top)[1]
    pred = tf.argmax(top[-1], axis=-1, output_type=tf.int32)
    c = tf.where(target >= 0, target, pred)
    flat = lambda x: None if x is None else tf.reshape(x, (R * G, -1))  # noqa: E731
    ref_s, abl_s = row_scores(definition, flat(probs), flat(logits), tf.tile(c, [R]))
    ref_s, abl_s = tf.reshape(ref_s, (R, G)), tf.reshape(abl_s, (R, G))
    if compare_outputs:
        unchanged |= tf.reduce_all(tf.equal(top[:-1], top[-1:]), axis=-1)
    ci = tf.where(unchanged, tf.zeros_like(abl_s[:-1]), ref_s[-1:] - abl_s[:-1])
    last = lambda x: None if x is None else x[-1]  # noqa: E731
    p_pred = row_scores("probability", last(probs), last(logits), pred)[0]
    return tf.transpose(ci), pred, p_pred, c
