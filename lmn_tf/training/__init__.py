"""Training, written once for the single-process command (`lmn_tf.train`) and the Horovod one
(`lmn_tf.distributed.fit`): the optimizer recipe (`optimizer`), the run directory and its
config (`run_dir`), the datasets a run names (`datasets`), the resumable fit (`resume`).
"""
