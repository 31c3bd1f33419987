"""Target descriptions: presets, the YAML loader, its error messages and the synapse cost."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from snnc.errors import SnncError
from snnc.targets import (
    ALIASES,
    EnergyTable,
    SynapseCost,
    Target,
    TargetError,
    load_target,
    preset_names,
    target_from_dict,
    target_to_dict,
)
from snnc.targets.schema import PRESET_DIR

FPGA_PRESETS = ["ice40-up5k", "ecp5-25k", "ecp5-85k"]


# ---------------------------------------------------------------------------------- presets


def test_preset_names_list_every_preset_and_the_fpga_alias():
    assert preset_names() == ["ecp5-25k", "ecp5-85k", "fpga", "ice40-up5k", "loihi1", "loihi2"]


@pytest.mark.parametrize("name", preset_names())
def test_preset_loads_and_round_trips_through_dict(name):
    t = load_target(name)
    assert isinstance(t, Target)
    assert t.source == ALIASES.get(name, name)
    d = target_to_dict(t)
    assert target_from_dict(d) == t
    assert target_to_dict(target_from_dict(d)) == d
    # the dict is plain YAML: dumping and reading it back gives the same target
    assert target_from_dict(yaml.safe_load(yaml.safe_dump(d))) == t


def test_loihi1_matches_reference_section_2():
    t = load_target("loihi1")
    assert (t.name, t.kind, t.cores, t.chips, t.topology, t.mesh) == (
        "loihi1", "loihi", 128, 1, "mesh", (8, 16),
    )  # fmt: skip
    assert t.core == dataclasses.replace(
        t.core,
        neurons=1024,
        input_axons=4096,
        output_axons=4096,
        synapse_memory_bits=16384 * 64,
        weight_bits=(0, 1, 2, 3, 4, 5, 6, 8),
        state_bits=24,
        current_bits=24,
        neuron_profiles=32,
        threshold_profiles=8,
        synapse_formats=8,
        max_delay=62,
    )
    assert t.synapse_cost == SynapseCost(
        kind="sparse", word_bits=64, index_bits=10, delay_bits=0, tag_bits=0, header_bits=10
    )
    assert (t.router_entries, t.multicast, t.spike_payload_bits) == (4096, False, 0)
    assert t.energy_pj["synop"] == 23.6
    assert set(t.energy_pj) == {"synop", "neuron_update", "spike_hop"}
    assert t.fpga is None
    assert t.total_cores == 128


def test_loihi2_is_marked_as_estimates_with_brief_numbers():
    t = load_target("loihi2")
    assert (t.cores, t.core.neurons, t.core.synapse_memory_bits) == (128, 8192, 192 * 1024 * 8)
    assert t.core.weight_bits == (1, 2, 3, 4, 5, 6, 7, 8)
    assert (t.spike_payload_bits, t.router_entries, t.multicast) == (24, 8192, True)
    assert t.synapse_cost.index_bits == 13  # names 8192 neurons
    assert "estimates" in t.notes


@pytest.mark.parametrize(
    "name, device, luts, brams, bram_bits, sprams, dsps",
    [
        ("ice40-up5k", "ice40-up5k", 5280, 30, 4096, 4, 8),
        ("ecp5-25k", "ecp5-25k", 24000, 56, 18432, 0, 28),
        ("ecp5-85k", "ecp5-85k", 84000, 208, 18432, 0, 156),
    ],
)
def test_fpga_preset_device_resources_match_reference_section_3(
    name, device, luts, brams, bram_bits, sprams, dsps
):
    f = load_target(name).fpga
    assert (f.device, f.luts, f.brams, f.bram_bits, f.sprams, f.dsps) == (
        device, luts, brams, bram_bits, sprams, dsps,
    )  # fmt: skip
    assert f.spram_bits == (256 * 1024 if sprams else 0)


def test_fpga_preset_sizing():
    up5k, e25, e85 = (load_target(n) for n in FPGA_PRESETS)
    assert (up5k.cores, up5k.topology, up5k.mesh) == (1, "crossbar", (1, 1))
    assert (up5k.core.neurons, up5k.core.state_bits) == (256, 20)  # fits 30 EBR
    assert up5k.core.synapse_memory_bits == 4 * 256 * 1024  # all four SPRAMs
    assert (up5k.fpga.weight_memory, up5k.fpga.lanes, up5k.fpga.clock_mhz) == ("spram", 8, 48.0)
    assert (e25.cores, e25.mesh, e25.core.neurons, e25.fpga.clock_mhz) == (2, (2, 1), 256, 100.0)
    # the 25K's EBR hold MNIST's hidden layer only at 4 bits: 16 lanes of a 64-bit word
    assert (e25.fpga.lanes, e25.core.weight_bits) == (16, (1, 2, 3, 4))
    assert (e85.cores, e85.mesh, e85.core.neurons, e85.fpga.clock_mhz) == (8, (4, 2), 512, 100.0)
    for t in (up5k, e25, e85):
        assert t.synapse_cost == SynapseCost(kind="dense", word_bits=64)
        assert t.core.weight_bits == tuple(range(1, 64 // t.fpga.lanes + 1))
        assert (t.router_entries, t.multicast, t.core.input_axons) == (256, True, 1024)
        assert t.fpga.weight_memory == "spram" or t.fpga.weight_memory == "bram"
        assert t.cores * t.core.synapse_memory_bits <= t.fpga.memory_bits(t.fpga.weight_memory)


def test_fpga_alias_is_the_ecp5_25k_preset():
    assert load_target("fpga") is load_target("ecp5-25k")


def test_mnist_hidden_layer_fits_the_up5k_core():
    # REFERENCE 5: 784 x 128 weights at 8 bits = 802,816 bits fit the UP5K's SPRAM
    t = load_target("ice40-up5k")
    assert 784 * t.axon_bits(128, 128, 8) == 802816 <= t.core.synapse_memory_bits


def test_target_is_frozen_and_hashable():
    t = load_target("loihi1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.cores = 1  # type: ignore[misc]
    assert hash(t) == hash(load_target("loihi1"))
    assert t.energy_pj.get("missing", -1.0) == -1.0


def test_energy_table_compares_by_value_in_any_order():
    a = EnergyTable((("synop", 1), ("spike_hop", 2.0)))
    assert a == EnergyTable.of({"spike_hop": 2, "synop": 1.0})
    assert a.as_dict() == {"spike_hop": 2.0, "synop": 1.0}


# -------------------------------------------------------------------------------- user files


@pytest.mark.parametrize("name", ["loihi1", "ice40-up5k"])
@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_user_file_loads_the_same_as_the_preset_it_copies(tmp_path, name, suffix):
    path = tmp_path / f"mine{suffix}"
    shutil.copy(PRESET_DIR / f"{name}.yaml", path)
    for spec in (path, str(path)):
        t = load_target(spec)
        assert t.source == str(path)
        assert dataclasses.replace(t, source=name) == load_target(name)


def test_load_target_passes_a_target_through():
    t = load_target("loihi2")
    assert load_target(t) is t


def _write_broken(tmp_path, base: str, edit) -> str:
    d = target_to_dict(load_target(base))
    edit(d)
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return str(path)


def _set(section, key, value):
    def edit(d):
        (d[section] if section else d)[key] = value

    return edit


def _delete(section, key):
    def edit(d):
        del (d[section] if section else d)[key]

    return edit


@pytest.mark.parametrize(
    "base, edit, fragment",
    [
        ("ecp5-25k", _set("core", "neurons", "many"),
         "key 'core.neurons': expected a positive integer, got 'many'"),
        ("ecp5-25k", _set("core", "input_axons", -5),
         "key 'core.input_axons': expected a positive integer, got -5"),
        ("loihi1", _set("", "cores", True), "key 'cores': expected a positive integer, got true"),
        ("loihi1", _set("core", "nurons", 7), "key 'core.nurons': unknown key; did you mean 'neurons'?"),  # noqa: E501
        ("loihi1", _set("", "multicst", True), "key 'multicst': unknown key; did you mean 'multicast'?"),  # noqa: E501
        ("loihi1", _set("energy_pj", "synops", 1.0), "key 'energy_pj.synops': unknown key; did you mean 'synop'?"),  # noqa: E501
        ("loihi1", _delete("core", "neurons"), "key 'core.neurons': missing; expected a positive integer"),  # noqa: E501
        ("loihi1", _delete("", "synapse_cost"), "key 'synapse_cost': missing; expected a mapping"),
        ("loihi1", _set("", "mesh", [8, 8]),
         "key 'mesh': expected width x height = cores (128), got 8 x 8 = 64"),
        ("loihi1", _set("", "mesh", [8]),
         "key 'mesh': expected a list [width, height] of two positive integers, got [8]"),
        ("ice40-up5k", _set("", "mesh", [2, 1]),
         "key 'mesh': expected [1, 1] (cores, 1) for a crossbar, got [2, 1]"),
        ("ecp5-25k", _delete("", "fpga"), "key 'fpga': missing; kind 'fpga' needs an 'fpga' section"),  # noqa: E501
        ("ecp5-25k", _set("", "fpga", None), "key 'fpga': missing; kind 'fpga' needs an 'fpga' section"),  # noqa: E501
        ("ecp5-25k", _set("", "core", 5), "key 'core': expected a mapping (core limits), got 5"),
        ("loihi1", _set("core", "weight_bits", [4, 17]),
         "key 'core.weight_bits': expected a non-empty list of distinct integers in 0..16, got [4, 17]"),  # noqa: E501
        ("loihi1", _set("core", "weight_bits", [4, 4]), "key 'core.weight_bits': expected"),
        ("loihi1", _set("synapse_cost", "kind", "csr"),
         "key 'synapse_cost.kind': expected 'dense' or 'sparse', got 'csr'"),
        ("loihi1", _set("synapse_cost", "index_bits", 9),
         "key 'synapse_cost.index_bits': expected at least 10 bits to name 1024 neurons, got 9"),
        ("ecp5-25k", _set("synapse_cost", "header_bits", 10),
         "key 'synapse_cost.header_bits': expected 0 for a dense synapse cost, got 10"),
        ("ecp5-25k", _set("fpga", "clock_mhz", 0), "key 'fpga.clock_mhz': expected a positive number, got 0"),  # noqa: E501
        ("ecp5-25k", _set("fpga", "family", "ice40"),
         "key 'fpga.family': expected 'ecp5' for device ecp5-25k, got 'ice40'"),
        ("ecp5-25k", _set("core", "synapse_memory_bits", 600000),
         "key 'core.synapse_memory_bits': expected cores x synapse memory <= the device's bram"),
        ("loihi1", lambda d: d.update(fpga=target_to_dict(load_target("fpga"))["fpga"]),
         "key 'fpga': expected no 'fpga' section for kind 'loihi'"),
        ("loihi1", _set("energy_pj", "synop", -1), "key 'energy_pj.synop': expected a non-negative number, got -1"),  # noqa: E501
    ],
)  # fmt: skip
def test_malformed_file_names_the_key_and_what_was_expected(tmp_path, base, edit, fragment):
    path = _write_broken(tmp_path, base, edit)
    with pytest.raises(TargetError) as err:
        load_target(path)
    assert f"target '{path}': {fragment}" in str(err.value)
    assert isinstance(err.value, SnncError)


def test_every_problem_is_reported_at_once(tmp_path):
    def edit(d):
        d["core"]["neurons"] = "many"
        d["core"]["nurons"] = 1
        del d["core"]["state_bits"]
        d["mesh"] = [3, 3]
        d["chips"] = 0
        del d["fpga"]

    path = _write_broken(tmp_path, "ecp5-25k", edit)
    with pytest.raises(TargetError) as err:
        load_target(path)
    lines = str(err.value).splitlines()
    assert len(lines) == len(err.value.problems) == 6
    assert all(line.startswith(f"target '{path}': key '") for line in lines)
    keys = [line.split("key '")[1].split("'")[0] for line in lines]
    assert sorted(keys) == sorted(
        ["core.neurons", "core.nurons", "core.state_bits", "mesh", "chips", "fpga"]
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("name: broken\ncores: 4\n  mesh: [2, 2]\n", "YAML error at line 3, column 7"),
        ("name: broken\ncore:\n  neurons: [1, 2\nkind: fpga\n", "YAML error at line 4"),
        ("name: a\ncores: 4\nkind: fpga\ncores: 8\n",
         "YAML error at line 4, column 1: duplicate key 'cores' (first given on line 2)"),
    ],
)  # fmt: skip
def test_yaml_syntax_error_names_file_and_line(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TargetError) as err:
        load_target(path)
    assert f"target '{path}': {fragment}" in str(err.value)


def test_empty_file_and_non_mapping_are_errors(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    with pytest.raises(TargetError, match="the file is empty"):
        load_target(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(TargetError, match=r"expected a mapping of target keys, got \[1, 2\]"):
        load_target(tmp_path / "list.yaml")


@pytest.mark.parametrize("spec", ["loihi3", "missing.yaml", "dir/missing"])
def test_unknown_preset_or_missing_file_lists_the_presets(spec):
    with pytest.raises(TargetError) as err:
        load_target(spec)
    message = str(err.value)
    assert message.startswith(f"target '{spec}': ")
    assert "presets: ecp5-25k, ecp5-85k, fpga (= ecp5-25k), ice40-up5k, loihi1, loihi2" in message


# ---------------------------------------------------------------------------- synapse cost

LOIHI_COST = SynapseCost(kind="sparse", word_bits=64, index_bits=10, header_bits=10)


@pytest.mark.parametrize(
    "n, weight_bits, bits",
    [
        (100, 8, 1856),  # ceil((100*18 + 10) / 64) * 64 = ceil(1810/64) * 64
        (1, 8, 64),  # 28 bits -> one word
        (3, 8, 64),  # 64 bits exactly
        (4, 8, 128),  # 82 bits -> two words
        (0, 8, 0),  # no synapses, no chunk
        (50, 0, 512),  # 0-bit weights still store indices: 510 bits -> 8 words
    ],
)
def test_sparse_axon_bits(n, weight_bits, bits):
    assert LOIHI_COST.axon_bits(n, 1024, weight_bits) == bits


def test_sparse_axon_bits_counts_delay_and_tag_bits():
    cost = SynapseCost(kind="sparse", word_bits=32, index_bits=6, delay_bits=4, tag_bits=2)
    assert cost.axon_bits(10, 64, 4) == 160  # 10 * 16 = 160 bits = 5 words exactly


@pytest.mark.parametrize(
    "neurons, weight_bits, lanes, word, bits",
    [
        (128, 8, 8, 64, 1024),  # 16 reads of one 64-bit word
        (10, 8, 8, 64, 128),  # 2 reads, the second half empty
        (10, 4, 8, 64, 128),  # narrower weights still take a read's whole word
        (5, 8, 1, 64, 320),  # one weight per read, one word per read
        (20, 8, 16, 64, 256),  # 2 reads of 128 bits = 2 words each
        (256, 9, 8, 64, 4096),  # 72 bits per read -> 2 words, 32 reads
        (0, 8, 8, 64, 0),
    ],
)
def test_dense_axon_bits(neurons, weight_bits, lanes, word, bits):
    cost = SynapseCost(kind="dense", word_bits=word)
    assert cost.axon_bits(neurons, neurons, weight_bits, lanes) == bits


def test_dense_axon_bits_ignore_synapse_count_but_zero_means_no_row():
    cost = SynapseCost(kind="dense", word_bits=64)
    assert cost.axon_bits(1, 256, 8, lanes=8) == cost.axon_bits(256, 256, 8, lanes=8) == 2048
    assert cost.axon_bits(0, 256, 8, lanes=8) == 0


def test_axon_bits_rejects_negative_counts():
    with pytest.raises(ValueError, match="non-negative"):
        LOIHI_COST.axon_bits(-1, 1024, 8)
    with pytest.raises(ValueError, match="lanes positive"):
        SynapseCost(kind="dense", word_bits=64).axon_bits(1, 8, 8, lanes=0)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 5000),
    w=st.integers(0, 16),
    idx=st.integers(0, 16),
    header=st.integers(0, 64),
    word=st.sampled_from([16, 32, 64, 72]),
)
def test_sparse_axon_bits_is_the_raw_size_rounded_up_to_a_word(n, w, idx, header, word):
    cost = SynapseCost(kind="sparse", word_bits=word, index_bits=idx, header_bits=header)
    raw = n * (w + idx) + header
    bits = cost.axon_bits(n, 0, w)
    assert bits % word == 0 and raw <= bits < raw + word
