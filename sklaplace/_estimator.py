"""LaplaceMLPClassifier: the scikit-learn estimator (a thin shell).

``fit -> _fitting.fit_network: MAP (_solvers) -> curvature (_curvature) ->
posterior (_posterior) -> evidence (_evidence)``; ``predict_proba -> latent
mean and variance -> predictive (_predictive)``. This module validates input,
keeps the warm-start state, calls those and stores their results; the methods
of the fitted model (predictions, the latent Gaussian, the evidence at another
prior) are :class:`~sklaplace._fitted.FittedLaplaceMixin`'s.
"""

from copy import deepcopy

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state

from sklaplace._auto import resolved_params
from sklaplace._backend import resolve_backend, to_numpy
from sklaplace._fit_config import FitConfig
from sklaplace._fitted import FittedLaplaceMixin
from sklaplace._fitting import fit_network
from sklaplace._likelihood import likelihood_for
from sklaplace._network import ParamLayout, forward
from sklaplace._parameters import PARAMETER_CONSTRAINTS
from sklaplace._residual import fit_residual
from sklaplace._validation import fit_rows, hidden_sizes

__all__ = ["LaplaceMLPClassifier"]


class LaplaceMLPClassifier(ClassifierMixin, FittedLaplaceMixin, BaseEstimator):
    """Multilayer perceptron classifier with a Laplace-approximated posterior.

    The network is trained by MAP on the Bernoulli (two classes, one logit)
    or categorical (K classes, K logits) likelihood plus a Gaussian prior;
    the Hessian of the negative log posterior at the MAP (exact or GGN; full,
    Kronecker-factored or diagonal; of all the weights or the last layer's)
    is the precision of a Gaussian posterior over the weights; predictions
    average over it through the linearised network (probit or Monte Carlo).

    Conventions, written once:

    * MAP objective: ``L(theta) = -sum_n s_n log p(y_n | x_n, theta) + 1/2
      theta' A theta``; the likelihood is SUMMED over samples, so integer
      sample weights equal repeated rows.
    * ``alpha`` is the prior precision of the weights (MLPClassifier's
      meaning) and ``bias_prior_precision`` that of the biases. With
      ``bias_prior_precision=0`` the MAP objective is ``n_samples`` times
      MLPClassifier's loss; with no hidden layer, ``LogisticRegression(C=1/alpha)``.
    * Parameters are ordered ``theta = [W_0.ravel(), b_0, W_1.ravel(), b_1,
      ...]`` (C order), with ``W_i = coefs_[i]`` of shape ``(fan_in,
      fan_out)``; every Hessian and covariance uses this order.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int or int, default=(100,)
        Units per hidden layer (an int is one layer); ``()`` is logistic.
    activation : {"identity", "logistic", "tanh", "relu", "softplus", "elu"}, \
            default="elu"
        Hidden-layer activation; ``"elu"``: ``z`` if ``z > 0``, else ``exp(z) - 1``.
    alpha : float, array-like of shape (n_layers,) or (n_params,), \
            "auto", "evidence", "evidence_per_layer" or "validation", default="auto"
        Prior precision of the weights: one value, one per layer, or one per
        parameter in the order of ``theta`` (which then sets the biases too, and
        ``bias_prior_precision`` is ignored). Values must be in the range
        ``[0.0, inf)``. ``"evidence"`` tunes one value by MacKay's fixed-point
        updates, where the Laplace evidence at the current MAP is stationary in
        alpha: from 1, fit, set ``alpha = gamma / ||w||^2`` (within [1e-6, 1e6],
        warned at a bound) and refit until no alpha moves 0.01% (at most 50
        refits, fewer if they cycle or 10 in a row stop at max_iter, with a
        ``ConvergenceWarning``); then from 10 and 100 (0.1 too if all collapse).
        A refit over 3 nats larger is kept, a later run's only at alphas at
        least the kept run's, unless held-out rows prefer the fixed point
        from 1 or 0.1 by 2 errors ("cv", full: leave-one-out too).
        ``"evidence_per_layer"`` tunes one per layer alike; where the layers'
        alphas march apart (a degenerate limit) it stops and warns. ``"validation"``
        fits 2-4 times: from 1, by decades the way MacKay's update points (else
        the other) while the log loss of the rows ``validation_fraction`` holds
        out, at the model's scale ``c``, falls by over a paired standard error
        and (on MacKay's side) his update points half a decade on; 1 if none
        can be held out. ``"auto"`` is ``"evidence"`` where refits are cheap
        (one gradient at most 5e6 multiply-adds, ``n_samples * n_params``,
        identical rows counted once) and ``"validation"`` beyond (``alpha_``).
    bias_prior_precision : float or array-like of shape (n_layers,), default=0.1
        Prior precision of the biases, in ``[0.0, inf)``; 0 is a flat prior
        (MLPClassifier's and, with no hidden layer, LogisticRegression's
        convention). The default is weak (sd ~3) and proper: a flat prior
        makes the posterior improper along the bias of a saturated unit.
    solver : {"auto", "newton-cg", "newton", "lbfgs"}, default="auto"
        MAP solver. ``"newton-cg"``: truncated (Hessian-free) Newton in a
        trust region: Steihaug-Toint conjugate gradients on exact
        Hessian-vector products (Pearlmutter's R-operator; about two
        gradients each), preconditioned by the empirical Fisher diagonal,
        exiting along negative curvature; no ``n_params**2`` matrix.
        ``"newton"``: Newton's method on the dense exact Hessian, damped
        (Levenberg-Marquardt; ``O(n_params^3)`` time, five
        ``n_params**2`` matrices per iteration). ``"lbfgs"``: SciPy's
        L-BFGS-B. ``"auto"`` is ``"newton-cg"`` where refits are cheap (see
        ``alpha``): faster than dense Newton, tighter than L-BFGS, and the
        same MAP for integer weights and repeated rows at ReLU kinks;
        ``"lbfgs"`` beyond, in about ``MLPClassifier``'s time (``solver_``).
    hessian : {"ggn", "exact"}, default="ggn"
        Curvature of the posterior precision: the generalised Gauss-Newton
        (always positive definite; the evidence tunes alpha on it either way)
        or the exact Hessian (the GGN, with a ``LaplaceApproximationWarning``,
        where it is not positive definite).
    hessian_structure : {"auto", "full", "kron", "diag"}, default="auto"
        Structure of the posterior precision: the full matrix, Kronecker
        factors per layer (EKFAC of the GGN, the prior exact; no
        ``n_params**2`` matrix), or its diagonal. The evidence tunes alpha
        for both on the exact GGN in sample space where its rows are fewer
        than the parameters and that is cheap (``low_rank_is_cheap``), else
        "kron" on itself, "diag" on the Kronecker (else, or pruned, itself).
        ``"auto"`` is ``"full"`` where the full posterior is cheap (at most 1
        GiB, 1e11 multiply-adds to build, ``n_samples * n_logits *
        n_params**2``, and 4e9 to factorise, ``n_params**3``), ``"kron"`` beyond
        while its factors fit the memory limits and 4e9 to diagonalise (``sum
        (fan_in + 1)**3 + fan_out**3``), ``"diag"`` beyond (``hessian_structure_``);
        ``"kron"`` takes the GGN (warned if exact).
    subset_of_weights : {"all", "last_layer"}, default="all"
        Parameters with a posterior: all of them, or the last layer only
        (the exact Laplace of the last layer given the MAP network's
        features; the other layers stay at the MAP and carry no
        uncertainty). ``hessian_structure`` (and ``"auto"``'s costs) apply to it.
    prior_precision_scale : float, "auto", "cv", "loo", "evidence" or \
            "validation", default="auto"
        Scale ``c`` of the prior precision in the Laplace posterior, chosen
        after the MAP (which is not refitted): the posterior precision is
        ``P_data + c A`` with ``A`` the MAP's prior and ``P_data`` the
        likelihood's curvature at the MAP. A float in ``(0.0, inf)`` fixes
        ``c`` (1 is the classical Laplace posterior). ``"cv"`` picks ``c`` on
        a log grid in ``[1e-2, 1e4]`` by the held-out log loss over 5 folds
        (MAPs to ``max(tol, 1e-4)``; the most cautious ``c`` within one standard
        error of the best, not below 1 unless the best is, nor below best / 10);
        ``"loo"`` by the same rule on the approximate leave-one-out log loss,
        with no refit (each row out of the MAP by one Newton step and out of
        the posterior; it screens MacKay's basins, folds confirm); ``"validation"``
        by the least log loss on ``validation_fraction`` of the rows, held
        out: the network is fitted on the others only (like
        ``MLPClassifier(early_stopping=True)``); ``"evidence"`` by the Laplace
        evidence. ``"auto"`` is ``"loo"`` where refits are cheap (see
        ``alpha``) and the posterior full, ``"cv"`` where refits are cheap and
        it is not, and ``"validation"`` beyond; with ``link_approx="map"`` (at
        fit), which ignores ``c``, every held-out choice is ``"evidence"``. Large ``c``
        approaches the plug-in MAP; small ``c`` moderates more. Details:
        :ref:`prior-scale`.
    validation_fraction : float, default=0.1
        Fraction of the rows ``"validation"`` (``alpha`` or the scale) holds
        out (chosen by a hash of each row's features, seeded by
        ``random_state``: copies of a row go together, so an integer sample
        weight still equals repeated rows; a class of under four distinct rows
        stays in). Values must be in the range ``(0.0, 1.0)``. With no weight on
        a side all rows are fitted (the walk's alpha 1, the evidence's ``c``).
    residual_variance : float or "auto", default="auto"
        Variance, at twice the training data's radius, of a term added to
        every logit that is zero within the data's envelope and grows with
        the cube of the (standardised) distance beyond it (Kristiadi et al.
        2021): far from the data the predictive tends to uniform, while
        predictions within the envelope are unchanged. ``"auto"``: the
        variance of the MAP's logits at twice the radius, 0 without a hidden
        layer; 0 switches the term off. Details: :ref:`residual-variance`.
    link_approx : {"probit", "mc", "map"}, default="probit"
        Predictive approximation: probit (MacKay; centred mean-field for K
        classes), Monte Carlo over the logit Gaussian, or the plug-in MAP.
    n_mc_samples : int, default=1000
        Draws for ``link_approx="mc"``, in ``[1, inf)``; ``fit`` draws them too
        where held-out rows choose the prior scale (its time grows with them).
    max_iter : int, default=200
        Maximum solver iterations. Values must be in the range ``[1, inf)``.
    tol : float or "auto", default="auto"
        Tolerance on the scaled gradient ``max|dL/dtheta| / sum(sample_weight)``
        (the gradient of the per-sample average objective). Values must be in
        the range ``(0.0, inf)``. ``"auto"`` is 1e-6 where refits are cheap
        (see ``alpha``), a tight mode for the posterior, and 1e-4 beyond:
        ``MLPClassifier``'s default, which its L-BFGS applies to the same
        quantity (``gtol``), so a large network stops where it would.
    warm_start : bool, default=False
        Start the solver from the previous MAP (and resume a tuned alpha from
        ``alpha_``, on the same held-out rows) when the layer sizes and classes
        match, and the feature names (a ``DataFrame``'s string column names)
        where both are known (else a ``UserWarning`` and a fresh start): fast
        re-training after a small change. On one from :func:`~sklaplace.prune`
        it re-trains the kept weights only: the pruned ones stay zero and
        ``pruned_mask_`` is kept.
    backend : {"numpy", "cupy", "auto"}, default="numpy"
        Array library for the computation; ``"auto"`` picks CuPy when a CUDA
        device is available. Fitted attributes are NumPy arrays either way.
    random_state : int, RandomState instance or None, default=None
        Seeds the held-out rows (folds, validation split), the Monte Carlo
        draws and the Glorot initialisation; a warm refit keeps the first two.
    verbose : int, default=0
        Print solver progress when positive.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    coefs_ : list of ndarray
        ``coefs_[i]`` of shape ``(fan_in, fan_out)`` at the MAP.
    intercepts_ : list of ndarray
        ``intercepts_[i]`` of shape ``(fan_out,)`` at the MAP.
    posterior_ : FullPosterior, DiagPosterior, KronPosterior or LastLayerPosterior
        The Laplace posterior the predictions use, with precision ``P_data +
        prior_precision_scale_ * A`` (NumPy arrays): ``cholesky_factor`` of
        the precision (full), ``precision`` (diag), one ``KronBlock`` per
        layer (kron), or the last layer's posterior as ``inner`` (last layer).
    prior_precision_scale_ : float
        The scale ``c`` of the posterior's prior precision (``prior_precision_scale``).
    prior_precision_scale_path_ : dict or None
        How ``c`` was chosen: ``"scales"`` (the grid) and ``"<m>_log_loss"``,
        ``<m>`` one of ``cv``, ``loo``, ``validation`` (held-out log loss per
        unit weight; its paired standard error against the best scale in
        ``"<m>_standard_error"``) or ``"log_marginal_likelihood"`` (log
        evidence at the fixed MAP), one value per scale; ``None`` for a fixed
        scale. Plot one against the other to see the trade-off. The evidence
        at any other prior is :meth:`log_marginal_likelihood`.
    residual_variance_ : float
        The residual's variance at twice the data's radius (see
        ``residual_variance``).
    data_envelope_ : DataEnvelope
        ``mean`` and ``scale`` (standard deviation; a constant feature's is
        the others' median) of the training inputs and ``radius``, the
        scaled distance from ``mean`` beyond which lies one row's worth of
        weight (1% under 100 rows' worth): beyond it the residual grows.
    hessian_structure_ : str
        The posterior structure used: ``hessian_structure``, or what
        ``"auto"`` chose (``"full"``, ``"kron"`` or ``"diag"``).
    subset_of_weights_ : str
        ``subset_of_weights`` as used (``"all"`` for a network without
        hidden layers, whose last layer is all of it).
    curvature_ : str
        Curvature actually used for the posterior (``"ggn"`` after a
        fallback from ``"exact"``).
    posterior_jitter_ : float
        Jitter added to the precision's diagonal (0.0 unless it was singular).
    log_marginal_likelihood_ : float or None
        Laplace log evidence at the MAP (see ``sklaplace._evidence``);
        ``None`` on a copy returned by :func:`~sklaplace.prune`.
    log_likelihood_ : float or None
        ``sum_n s_n log p(y_n | x_n, theta_map)`` over the rows fitted (not
        the validation rows held out); ``None`` after pruning.
    prior_precision_ : ndarray of shape (n_params,)
        Prior precision of every parameter, in the order of ``theta``.
    pruned_mask_ : ndarray of bool of shape (n_params,)
        Parameters held at zero, in the order of ``theta``: the pruned
        weights, and the incoming weights and bias of hidden units left with
        no outgoing weight. Only on an estimator returned by
        :func:`~sklaplace.prune` and its warm-started refits.
    alpha_ : float or array-like of shape (n_layers,) or (n_params,)
        Weight precision used: the ``alpha`` given (as given), or the tuned
        one (one per layer for ``"evidence_per_layer"`` with several layers).
    alpha_history_ : list of ndarray
        Alphas of each refit of the run whose refit was kept (anywhere on it)
        or of the validation walk (empty for a fixed alpha or no held rows).
    effective_n_parameters_ : ndarray of shape (n_groups,) or None
        MacKay's ``gamma`` per group at the kept refit, under the posterior
        kept but at the MAP's own prior (``prior_precision_scale_`` 1: the
        prior the updates tuned; a last layer's counts it alone; below 0 only
        where an exact Hessian is indefinite), else None (also after pruning).
    loss_ : float or None
        ``L(theta_map) / sum(sample_weight)`` over the rows fitted: the
        per-sample MAP objective, MLPClassifier's ``loss_`` when
        ``bias_prior_precision=0``; ``None`` after pruning.
    n_iter_ : int
        Solver iterations (Newton-CG: outer ones), summed over the fits that
        tune alpha (``max_iter`` bounds each; the kept one warns if unconverged).
    solver_ : str
        The solver used: ``solver``, or what ``"auto"`` chose.
    tol_ : float
        The tolerance used: ``tol``, or what ``"auto"`` chose.
    n_hessian_products_ : int
        Hessian-vector products of ``"newton-cg"`` (else 0), summed like ``n_iter_``.
    gradient_history_ : list of float
        Scaled gradient at the start and after each solver iteration that
        moved (a Newton solver's last iteration that found no acceptable
        step counts in ``n_iter_`` but adds none), of every fit that tunes
        alpha in turn (the last fit run may not be kept).
    loss_curve_ : list of float
        The per-sample MAP objective (``loss_``'s units) at the points of
        ``gradient_history_``, fit after fit (each at its own alpha; the last
        need not be the kept one, nor its last entry ``loss_``); a refit,
        warm or not, starts it anew.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit, when ``X`` has string column names.
    n_outputs_ : int
        Number of logits (1 for two classes).
    n_layers_ : int
        Number of layers, input and output included (``len(coefs_) + 1``).
    out_activation_ : str
        ``"logistic"`` (one logit, two classes) or ``"softmax"``.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : The same network, trained by MAP only.
    sklearn.gaussian_process.GaussianProcessClassifier : Laplace approximation
        for a Gaussian process.

    Notes
    -----
    Memory: ``fit`` raises :class:`~sklaplace.exceptions.MemoryLimitError`
    (a ``MemoryError``) before any work if one ``n_params x n_params``
    matrix or Kronecker factor would exceed 2 GiB (over 16,384 parameters)
    or all the fit holds at once 10 GiB; a fit that raises (a
    ``KeyboardInterrupt`` included) leaves the estimator as it was; logits
    or curvatures that overflow float64 raise ``ValueError``; the prediction
    methods may be called from several threads at once. Details:
    :ref:`memory-failures-threads`.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklaplace import LaplaceMLPClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(),
    ...                     LaplaceMLPClassifier((8,), random_state=0)).fit(X, y)
    >>> clf.predict_proba(X[:2]).round(2)
    array([[1., 0.],
           [1., 0.]])
    >>> float(clf[-1].prior_precision_scale_) > 0  # chosen on rows left out
    True
    """

    _parameter_constraints = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="elu",
        *,
        alpha="auto",
        bias_prior_precision=0.1,
        solver="auto",
        hessian="ggn",
        hessian_structure="auto",
        subset_of_weights="all",
        prior_precision_scale="auto",
        validation_fraction=0.1,
        residual_variance="auto",
        link_approx="probit",
        n_mc_samples=1000,
        max_iter=200,
        tol="auto",
        warm_start=False,
        backend="numpy",
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.bias_prior_precision = bias_prior_precision
        self.solver = solver
        self.hessian = hessian
        self.hessian_structure = hessian_structure
        self.subset_of_weights = subset_of_weights
        self.prior_precision_scale = prior_precision_scale
        self.validation_fraction = validation_fraction
        self.residual_variance = residual_variance
        self.link_approx = link_approx
        self.n_mc_samples = n_mc_samples
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Find the MAP, then the Laplace posterior and the log evidence.

        A fit that raises (even ``KeyboardInterrupt``) leaves the estimator
        as it was: the previous fit's attributes, or none.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; a SciPy sparse matrix or array is densified.
        y : array-like of shape (n_samples,)
            Class labels (any hashable type scikit-learn accepts).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights, counts: an integer weight equals repeating
            the row, and scaling all weights by ``c`` weighs the data ``c``
            times against the prior (see the user guide). Their total must lie
            in ``[2**-53, 2**53]``, where float64 weighs it against the prior.

        Returns
        -------
        self : LaplaceMLPClassifier
            The fitted estimator.
        """
        # validate_data resets n_features_in_: restore it all if a step fails.
        previous = dict(self.__dict__)
        try:
            return self._fit(X, y, sample_weight)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(previous)
            raise

    def _fit(self, X, y, sample_weight):
        # The names the fitted weights' inputs are known by: a warm start
        # compares them with this fit's (fit_rows resets feature_names_in_).
        known_names = getattr(self, "_input_names", None)
        X, y_index, sample_weight, classes = fit_rows(self, X, y, sample_weight)
        names = getattr(self, "feature_names_in_", None)
        likelihood = likelihood_for(classes.shape[0])
        layout = ParamLayout(
            (
                X.shape[1],
                *hidden_sizes(self.hidden_layer_sizes),
                likelihood.n_outputs(classes.shape[0]),
            )
        )
        params = resolved_params(self, layout, X.shape[0])
        config = FitConfig.from_params(params)
        xp = resolve_backend(self.backend)
        rng = check_random_state(self.random_state)
        # First: independent of the network's size (a warm refit keeps its own).
        mc_seed = int(rng.randint(np.iinfo(np.int32).max))
        start = self._initial_state(layout, classes, rng, known_names, names)
        theta, fixed, alpha_start, seed, reference = start
        mc_seed = mc_seed if seed is None else seed
        data, theta = (X, y_index, sample_weight), xp.asarray(theta)
        network = fit_network(  # (1)-(5)
            config,
            xp,
            layout,
            likelihood,
            data,
            theta,
            fixed,
            mc_seed,
            alpha_start,
            reference,
        )
        fit, refits = network.fit, network.refits
        envelope, tau2 = fit_residual(
            self.residual_variance,
            X,
            sample_weight,
            n_layers=layout.n_layers,
            map_logits=lambda rows: to_numpy(
                forward(xp, layout, fit.theta, xp.asarray(rows), self.activation).logits
            ),
        )
        log_likelihood, log_evidence = fit.log_likelihood, fit.log_evidence()
        # Assign only now, together (fit restores everything if this fails).
        if fixed is not None:
            self.pruned_mask_ = fixed
        elif hasattr(self, "pruned_mask_"):
            del self.pruned_mask_  # a cold refit discards an earlier pruning
        self.classes_ = classes
        self.n_outputs_ = layout.n_outputs
        self.n_layers_ = layout.n_layers + 1
        self.out_activation_ = likelihood.out_activation
        coefs, intercepts = layout.split(np, to_numpy(fit.theta))
        self.coefs_ = [np.array(c) for c in coefs]
        self.intercepts_ = [np.array(b) for b in intercepts]
        self.posterior_ = network.prior_scale.posterior
        self.prior_precision_scale_ = network.prior_scale.scale
        self.prior_precision_scale_path_ = network.prior_scale.path
        self.data_envelope_ = envelope
        self.residual_variance_ = tau2
        self.hessian_structure_ = config.hessian_structure
        self.subset_of_weights_ = config.subset_of_weights
        self.curvature_ = fit.curvature
        self.posterior_jitter_ = fit.jitter
        self.prior_precision_ = to_numpy(fit.prior_precision).copy()
        self.alpha_ = deepcopy(network.alpha)  # not the user's own list
        self.alpha_history_ = network.history
        self.effective_n_parameters_ = network.gammas
        self.log_likelihood_ = log_likelihood
        self.log_marginal_likelihood_ = log_evidence
        self.loss_ = fit.result.loss / float(fit.objective.gradient_scale)  # per weight
        self.n_iter_ = sum(r.result.n_iter for r in refits)
        self.solver_ = config.solver
        self.tol_ = config.tol
        self.n_hessian_products_ = sum(r.result.n_hessian_products for r in refits)
        self.gradient_history_ = [g for r in refits for g in r.result.gradient_history]
        self.loss_curve_ = [loss for r in refits for loss in r.result.loss_history]
        self._mc_seed, self._activation = mc_seed, config.activation  # for predictions
        # A warm fit without names keeps the names its start's inputs had.
        warm = seed is not None
        self._input_names = names if names is not None or not warm else known_names
        return self
