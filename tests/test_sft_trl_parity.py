"""Our SFT and TRL 0.29.1's SFTTrainer (``rlhf_gym.benchmarks.trl_sft``'s matched settings) take the same steps: same
initial model, demonstrations, batches (the first epoch's order is the same) and settings give the same per-step losses."""

import pytest
from transformers import PrinterCallback

from rlhf_gym.benchmarks.trl_sft import Args, check_same_ids, fresh_model, trl_trainer
from rlhf_gym.sft import evaluation_loss, train_sft
from rlhf_gym.sft_data import split_held_out, task_demonstrations, tokenize
from rlhf_gym.tasks import world_of
from helpers import one_thread  # noqa: F401  (an autouse fixture: one torch thread for the module)

pytest.importorskip("trl")  # the bench extra, not the test extra





def test_our_sft_and_trl_s_take_the_same_steps(tmp_path):
    world = world_of("reviews")
    tokenizer = world.tokenizer()
    train, held_out = split_held_out(task_demonstrations(world, 110, seed=1), 0.1, seed=1)
    check_same_ids(train + held_out, tokenizer)
    config = Args(n_demonstrations=110, batch_size=16).sft_config(seed=1)
    initial = fresh_model(tokenizer, 1).state_dict()
    ours, theirs = fresh_model(tokenizer, 1), fresh_model(tokenizer, 1)
    ours.load_state_dict(initial)
    theirs.load_state_dict(initial)
    our_losses = train_sft(ours, [tokenize(d, tokenizer) for d in train], config, tokenizer.pad_token_id,
                           progress=False).losses
    trainer = trl_trainer(theirs, tokenizer, train, held_out, config, tmp_path / "trl")
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trl_losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert len(our_losses) == len(trl_losses) == 7  # 99 demonstrations in batches of 16
    assert our_losses == pytest.approx(trl_losses, rel=1e-5)
    held = [tokenize(d, tokenizer) for d in held_out]
    assert evaluation_loss(ours, held, tokenizer.pad_token_id, True) == pytest.approx(
        evaluation_loss(theirs, held, tokenizer.pad_token_id, True), rel=1e-5)
