"""The host processor's reading (cianna_jax.host_cpu), which CPU layer rules consult."""

from cianna_jax import host_cpu


def test_cpuinfo_names_the_widest_vector_unit():
    """``/proc/cpuinfo`` texts of the machines seen: an AVX-512 and an AVX2 EPYC, an
    Arm core (NEON, BF16), an Intel Xeon with AMX, and a text without flags."""
    epyc = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
            "flags\t\t: fpu sse sse4_2 avx fma avx2 {}\n\nprocessor\t: 1\n"
            "model name\t: other\nflags\t\t: fpu\n")
    assert host_cpu.parse_cpuinfo(epyc.format("avx512f avx512bw")) == dict(
        model="AMD EPYC", vector_isa="AVX-512", bf16=())
    assert host_cpu.parse_cpuinfo(epyc.format("bmi2")) == dict(model="AMD EPYC",
                                                                vector_isa="AVX2", bf16=())
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes bf16\n"
    assert host_cpu.parse_cpuinfo(arm) == dict(model=None, vector_isa="NEON", bf16=("BF16",))
    assert host_cpu.parse_cpuinfo("") == dict(model=None, vector_isa=None, bf16=())
    # the Intel Xeon of 2026-12-07: AVX-512 with bfloat16 in AVX-512 and in AMX tiles
    xeon = ("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f "
            "avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8\n")
    assert host_cpu.parse_cpuinfo(xeon) == dict(model="Intel(R) Xeon(R) Processor",
                                                vector_isa="AVX-512",
                                                bf16=("AVX512-BF16", "AMX-BF16"))


def test_host_reading_is_one_fresh_dict_per_call():
    """The host is read once per process; callers get their own dict (changing it
    changes nothing for the next caller) and :func:`vector_unit` is its unit."""
    info = host_cpu.cpu_info()
    assert set(info) == {"model", "vector_isa", "bf16"}
    assert set(info["bf16"]) <= {name for _, name in host_cpu.BF16_UNITS}
    assert host_cpu.vector_unit() == info["vector_isa"]
    assert info["vector_isa"] in {name for _, name in host_cpu.VECTOR_ISAS} | {None}
    info["vector_isa"] = "changed"
    assert host_cpu.cpu_info()["vector_isa"] == host_cpu.vector_unit() != "changed"
