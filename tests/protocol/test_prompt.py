"""Messages -> the single upstream message."""

from __future__ import annotations

from glm_proxy.inputs.prompt import build_prompt


def test_single_message_is_sent_as_is():
    prompt = build_prompt([{"role": "user", "content": "hello"}])
    assert prompt.text == "hello"


def test_history_is_flattened_with_roles_and_ends_with_assistant_turn():
    prompt = build_prompt(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello ![img](http://x/y.png) see /mnt/data/a.png"},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
        ]
    )
    assert prompt.text.startswith("<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\n")
    assert "![img]" not in prompt.text and "/mnt/data" not in prompt.text
    assert prompt.text.endswith("<|user|>\nagain\n<|assistant|>\n")


def test_native_multi_turn_sends_only_the_last_user_message():
    prompt = build_prompt(
        [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": "two"},
        ],
        native_multi_turn=True,
    )
    assert prompt.text == "two"


def test_attachments_from_every_turn_are_collected():
    prompt = build_prompt(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "read"},
                    {"type": "file", "file_url": {"url": "http://h/a.pdf"}},
                ],
            },
            {"role": "assistant", "content": "ok"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": "http://h/b.png"},
                    {
                        "type": "file",
                        "file": {"file_data": "data:text/plain;base64,aGk=", "filename": "hi.txt"},
                    },
                    {"type": "text", "text": "and these"},
                ],
            },
        ]
    )
    kinds = [(a.kind, a.url[:10], a.message_index) for a in prompt.attachments]
    assert kinds == [
        ("file", "http://h/a", 0),
        ("image", "data:image", 2),
        ("image", "http://h/b", 2),
        ("file", "data:text/", 2),
    ]
    assert prompt.attachments[-1].filename == "hi.txt"
    assert "<|system|>" in prompt.text  # the "look at the latest files" hint
