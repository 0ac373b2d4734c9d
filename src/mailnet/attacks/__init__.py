"""Adversarial attacks and the honest robustness suite (design doc section 4).

Modules: ``losses`` (CE / DLR on logits, masked, summed over heads), ``eot`` (draw averaging, attack mode),
``pgd`` (PGD, FGSM, BIM, MIM), ``reference`` (the paper's protocol), ``autoattack`` (torchattacks behind a
one-tensor view), ``square`` (the score-based Square attack, on a random model's averaged prediction),
``transfer`` (deterministic surrogates), ``gradient_agreement`` (do EOT gradient estimates agree?), ``subset``
(the fixed rows attacked), ``suite`` (attacks x eps -> records), ``sanity`` (checks on records), ``report``
(CSV / JSON / PNG), ``adv_train`` (per-batch adversarial examples for training), ``eps`` (parsing budgets).
Import the module you need; nothing heavy is imported here.
"""
