"""What a fitted LaplaceMLPClassifier answers: predictions and the evidence.

:class:`FittedLaplaceMixin` holds the estimator's methods that only read
its fitted attributes (``coefs_``, ``intercepts_``, ``posterior_``,
``classes_``, ...): the class probabilities and decisions, the Gaussian
over the logits, the log evidence at another prior, and the warm-start
state. None of them writes to the estimator, so several threads may call
the public ones at once.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from sklaplace._backend import get_namespace, resolve_backend, to_numpy
from sklaplace._evidence_at_prior import log_evidence_at_prior, replace_prior
from sklaplace._likelihood import likelihood_for
from sklaplace._network import ParamLayout
from sklaplace._predictive import (
    latent_gaussian,
    moderated_logits,
    plug_in_logits,
    predictive_rows_per_chunk,
)
from sklaplace._residual import residual_variance
from sklaplace._validation import check_finite_rows, validate_features
from sklaplace._warnings import warn

__all__ = ["FittedLaplaceMixin"]


class FittedLaplaceMixin:
    """Prediction and evidence methods of :class:`~sklaplace.LaplaceMLPClassifier`.

    A mixin: it reads the attributes ``fit`` sets (the activation among
    them: the weights' own, whatever ``activation`` is set to since) and the
    parameters ``backend``, ``link_approx``, ``n_mc_samples`` and
    ``warm_start``, and sets nothing.
    """

    def _initial_state(self, layout, classes, rng, known_names=None, names=None):
        """Return the start: theta, fixed parameters, alpha, seed and reference.

        The fitted MAP when ``warm_start`` is set and a warm start applies:
        it needs the same network AND the same classes (otherwise the old
        logits would belong to other labels) AND, where both are known, the
        same feature names in the same order (otherwise each input's
        weights, and its pruning, would move to another feature). It keeps
        an earlier pruning (the pruned weights stay zero and only the others
        re-train), if alpha was tuned its ``alpha_`` as the tuning's one
        start, and the previous fit's seed of the held-out rows (rows the
        warm start's MAP was fitted on must not be held out to score it).
        Otherwise a Glorot initialisation from ``rng``, and ``None, None,
        None``. Last, the weights along which a refit from a MAP splits its
        coinciding units (:func:`~sklaplace._fitting.fit_network`): the
        Glorot initialisation a cold fit draws, also for a warm one, so
        that a warm refit's walk re-fits from a MAP as the cold walk did.

        Parameters
        ----------
        layout : ParamLayout
            This fit's network.
        classes : ndarray
            This fit's classes.
        rng : RandomState
        known_names : ndarray of str or None
            The feature names the fitted weights' inputs are known by (the
            last fit given names whose weights they descend from), or None.
        names : ndarray of str or None
            This fit's ``feature_names_in_``, or None (no names given).
        """
        if self.warm_start and hasattr(self, "coefs_"):
            same_classes = np.array_equal(self.classes_, classes)
            same_sizes = self._layout().layer_sizes == layout.layer_sizes
            same_names = (
                known_names is None
                or names is None
                or np.array_equal(names, known_names)
            )
            if same_classes and same_sizes and same_names:
                theta = layout.pack(np, self.coefs_, self.intercepts_)
                start = self.alpha_ if self.alpha_history_ else None
                fixed = getattr(self, "pruned_mask_", None)
                return theta, fixed, start, self._mc_seed, layout.glorot_init(rng)
            # MLPClassifier raises here; a cold start is documented, but the
            # user asked for a warm one and should know it did not happen.
            differ = [
                name
                for name, same in (
                    ("classes", same_classes),
                    ("layer sizes", same_sizes),
                    ("feature names", same_names),
                )
                if not same
            ]
            other = differ[-1]
            if len(differ) > 1:  # "classes, layer sizes and feature names"
                other = ", ".join(differ[:-1]) + " and " + other
            warn(
                f"warm_start=True, but this fit's {other} differ from the "
                "previous fit's: it starts from a fresh initialisation (and "
                "drops any pruning).",
                UserWarning,
            )
        theta = layout.glorot_init(rng)
        return theta, None, None, None, theta

    def log_marginal_likelihood(self, alpha=None, bias_prior_precision=None):
        """Laplace log evidence at other prior precisions, at the fitted MAP.

        No refit: the MAP and the data part of the posterior precision are
        kept, and only the prior changes (``P = P_data + A``). The default
        arguments give ``log_marginal_likelihood_``, the evidence at the MAP's
        own prior (not at ``prior_precision_scale_`` times it); use it to
        plot the evidence against ``alpha``. It is the quantity MacKay's
        updates make stationary (at this MAP) where the posterior is the one
        they tuned on, the GGN of all weights, full or Kronecker-factored. A
        Kronecker fit with fewer GGN rows than parameters is tuned on the
        exact GGN in sample space where that is cheap; there, and with
        ``hessian="exact"``, a diagonal or a last-layer posterior, it is
        this posterior's evidence, whose peak may lie elsewhere (a 3-class
        fit's last layer: 2.3 nats higher at alpha 0.23 than at ``alpha_``
        0.34).

        Parameters
        ----------
        alpha : float or array-like of shape (n_layers,) or (n_params,), default=None
            Weight precision; ``None`` keeps the fitted one. A Kronecker
            posterior holds one per input row of a layer: one that varies
            across a row's outputs is replaced by the row's mean (with a
            ``LaplaceApproximationWarning``).
        bias_prior_precision : float or array-like of shape (n_layers,), default=None
            Bias precision; ``None`` keeps the fitted one. Ignored where
            ``alpha`` has one value per parameter (it sets the biases too,
            as in ``fit``).

        Returns
        -------
        log_evidence : float
            ``-inf`` if the posterior precision is not positive definite
            there, or if the new prior is flat (0) on a parameter the fitted
            one was not: an improper prior's evidence is defined only up to a
            constant (see the user guide), and ``-inf`` is its limit as that
            precision falls to 0. Also where round-off cannot tell: a new
            prior some 1e14 times the data's curvature on some parameters
            but not others (the biases' prior kept; a small network whose
            precision's diagonal is at most 73: from ``alpha`` 1e15 on a
            Kronecker posterior, 1e17 on a full one, never on a diagonal
            one), or one so small that the precision is singular to
            round-off (``alpha`` 1e-14 there, full).

        Raises
        ------
        ValueError
            If a precision is negative, not finite or of the wrong length,
            or (with more than two classes) if the prior of the output
            biases, or of all of one input's last-layer weights, would go
            from flat (0) to proper: the posterior treats that row's common
            shift (which a softmax ignores) as flat only under a flat one,
            so that change needs a refit (from proper to flat is ``-inf``,
            above); or if the estimator was returned by
            :func:`~sklaplace.prune` (its log likelihood needs the data:
            refit it with ``warm_start=True`` first).
        """
        check_is_fitted(self)
        if self.log_likelihood_ is None:
            raise ValueError(
                "The log evidence of a pruned estimator is not available: it needs "
                "the training data. Refit with warm_start=True (it re-trains the "
                "kept weights and keeps the pruned ones at zero) to get it."
            )
        layout = self._layout()
        new = replace_prior(layout, self.prior_precision_, alpha, bias_prior_precision)
        if np.array_equal(new, self.prior_precision_):
            # The stored value, not a refactorisation of the same precision:
            # on a nearly singular posterior round-off in that refactorisation
            # had turned a finite evidence into -inf (alpha=0), or moved it by
            # 0.7 nats (a flat bias prior, 3 classes).
            return self.log_marginal_likelihood_
        return log_evidence_at_prior(
            layout,
            layout.pack(np, self.coefs_, self.intercepts_),
            self.log_likelihood_,
            self.prior_precision_,
            self.posterior_,
            self.prior_precision_scale_,  # posterior_'s prior is scaled
            alpha,
            bias_prior_precision,
            getattr(self, "pruned_mask_", None),
        )

    def _predict_namespace(self):
        # A model fitted on a GPU still predicts on a machine without CuPy.
        try:
            return resolve_backend(self.backend)
        except ImportError:
            return get_namespace(np.empty(0))

    def _layout(self):
        return ParamLayout.of_coefs(self.coefs_)

    def _weights(self):
        """Return the prediction namespace, the layout and ``theta`` in it."""
        xp = self._predict_namespace()
        layout = self._layout()
        theta = layout.pack(
            xp,
            [xp.asarray(c) for c in self.coefs_],
            [xp.asarray(b) for b in self.intercepts_],
        )
        return xp, layout, theta

    def _map_logits(self, X):
        """Logits at the MAP: the plug-in needs no Jacobian nor posterior."""
        xp, layout, theta = self._weights()
        with np.errstate(over="ignore", invalid="ignore"):
            logits = plug_in_logits(xp, layout, theta, self._activation, X)
        check_finite_rows(xp, "logits", logits, inputs=X)
        return xp, logits

    def _latent(self, X, centred=False):
        """Logit mean and covariance in the prediction namespace, in row batches.

        ``centred``: the covariance a softmax sees (``latent_gaussian``).
        """
        xp, layout, theta = self._weights()
        mask = getattr(self, "pruned_mask_", None)
        keep = None if mask is None else xp.asarray((~mask).astype(np.float64))
        # Inputs far outside the training range may overflow: no NumPy
        # warning, the check below names the rows.
        with np.errstate(over="ignore", invalid="ignore"):
            mean, cov = latent_gaussian(
                xp, layout, theta, self._activation, self.posterior_, X, keep, centred
            )
            residual = residual_variance(
                self.data_envelope_, self.residual_variance_, X, to_numpy(mean)
            )
            eye = xp.eye(layout.n_outputs, dtype=cov.dtype)
            cov = cov + xp.asarray(residual)[:, None, None] * eye
        check_finite_rows(xp, "logits or their covariance", mean, cov, inputs=X)
        return xp, mean, cov

    def latent_mean_and_variance(self, X):
        """Mean and covariance of the logits under the linearised posterior.

        The epistemic uncertainty itself: ``mean = f(x, theta_map)`` and
        ``cov = J P^{-1} J' + v(x) I`` with ``J`` the logit Jacobian at ``x``
        and ``v(x)`` the residual variance beyond the training data (0
        within it; see ``residual_variance``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        mean : ndarray of shape (n_samples, ``n_outputs_``)
            Logits at the MAP (one column for two classes).
        cov : ndarray of shape (n_samples, ``n_outputs_``, ``n_outputs_``)
            Covariance of the logits.
        """
        check_is_fitted(self)
        X = validate_features(self, X, reset=False)
        _, mean, cov = self._latent(X)
        return to_numpy(mean), to_numpy(cov)

    def _moderated_logits(self, X):
        check_is_fitted(self)
        # link_approx and n_mc_samples may be set after fit (set_params):
        # checked here as fit checks them (a KeyError and a ZeroDivisionError
        # had named neither).
        self._validate_params()
        X = validate_features(self, X, reset=False)
        if self.link_approx == "map":
            # The plug-in ignores the covariance, whose Jacobians cost
            # n_samples * n_outputs * n_params**2 with a full posterior.
            return self._map_logits(X)
        rows = predictive_rows_per_chunk(
            self.link_approx, self.n_outputs_, self.n_mc_samples
        )
        xp, mean, cov = self._latent(X, centred=True)
        logits = moderated_logits(
            xp, mean, cov, self.link_approx, self.n_mc_samples, self._mc_seed, rows
        )
        check_finite_rows(xp, "moderated logits", logits)
        return xp, logits

    def predict_proba(self, X):
        """Class probabilities under the Laplace predictive.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``.
        """
        xp, logits = self._moderated_logits(X)
        return to_numpy(likelihood_for(self.classes_.shape[0]).proba(xp, logits))

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        xp, logits = self._moderated_logits(X)
        return to_numpy(likelihood_for(self.classes_.shape[0]).log_proba(xp, logits))

    def decision_function(self, X):
        """Moderated logits: ranks exactly like :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the moderated logit of ``classes_[1]``; for K
            classes, the moderated logits whose softmax is ``predict_proba``.
        """
        _, logits = self._moderated_logits(X)
        logits = to_numpy(logits)
        return logits[:, 0] if logits.shape[1] == 1 else logits

    def predict(self, X):
        """Bayes decision: ``classes_[argmax(predict_proba(X))]``.

        Read from the moderated logits (:meth:`decision_function`), which
        rank like the probabilities but do not round to a tie where those
        do (far from the data: 1/2 or 1/K exactly).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        _, logits = self._moderated_logits(X)
        logits = to_numpy(logits)
        if logits.shape[1] == 1:
            return self.classes_[(logits[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(logits, axis=1)]
