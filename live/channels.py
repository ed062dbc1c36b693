"""Channels (Centrifugo's pattern): what a reader follows, and which channels a change goes to.

A reader follows the river (every feed), one feed, one blog, or one feed within one blog. The hub
keeps a map from each channel to its readers, so routing a change costs work only for the readers
who must receive it, never for other blogs or their readers. Entries reach blogs through the blogs'
sources, as of each change's number: a source added or removed, or a blog ended, is itself a change
in order with the others, so the routing always matches the change log (live/replay.py:in_blog).
"""

ALL = ("all",)


def feed_channel(feed_id: int) -> tuple:
    return ("feed", feed_id)


def blog_channel(blog_id: int, feed_id: int | None = None) -> tuple:
    return ("blog", blog_id) if feed_id is None else ("blog", blog_id, feed_id)


def channel_of(blog_id: int | None, feed_id: int | None) -> tuple:
    if blog_id is not None:
        return blog_channel(blog_id, feed_id)
    return ALL if feed_id is None else feed_channel(feed_id)


def matches(event, channel: tuple) -> bool:
    """Whether a reader of `channel` gets `event` (one replayed from the hub's memory)."""
    if event.blog is None:  # an entry's change
        if channel[0] == "blog":
            return channel[1] in event.blogs and (len(channel) == 2 or channel[2] == event.feed_id)
        # A post (no feed) belongs to its blog's stream, not to the river of sources.
        return event.feed_id is not None and channel in (ALL, feed_channel(event.feed_id))
    # A blog's own change: for its readers; one about a source only for that source's readers too.
    return (
        channel[0] == "blog"
        and channel[1] == event.blog
        and (len(channel) == 2 or event.feed_id is None or channel[2] == event.feed_id)
    )


def _known_max(*values):
    # An unknown `prev` is older than anything the hub holds: the known one, if any, is the latest.
    known = [value for value in values if value is not None]
    return max(known) if known else None


class Routes:
    """Which blogs each feed's entries go to, and the last change of each channel (its `prev`)."""

    def __init__(self):
        self.feed_blogs: dict[int, set[int]] = {}
        self.blog_feeds: dict[int, set[int]] = {}
        # ("blog", id, "*") is the last change of the whole blog, which its feed channels follow too.
        self.last_of: dict[tuple, int] = {}

    def clear(self, everything_known: bool) -> None:
        self.feed_blogs.clear()
        self.blog_feeds.clear()
        self.last_of.clear()
        if everything_known:
            self.last_of[ALL] = 0  # nothing came before the first change

    def route(self, blog_id: int, feed_id: int) -> None:
        self.feed_blogs.setdefault(feed_id, set()).add(blog_id)
        self.blog_feeds.setdefault(blog_id, set()).add(feed_id)

    def unroute(self, blog_id: int, feed_id: int | None = None) -> None:
        """Stop routing a feed's entries to a blog (None: every feed; the blog has ended)."""
        feeds = self.blog_feeds.get(blog_id, set())
        for feed in list(feeds) if feed_id is None else [feed_id]:
            feeds.discard(feed)
            blogs = self.feed_blogs.get(feed)
            if blogs is not None:
                blogs.discard(blog_id)
                if not blogs:
                    del self.feed_blogs[feed]
        if not feeds:
            self.blog_feeds.pop(blog_id, None)

    def change(self, seq: int, feed_id, blog, kind: str, filters) -> tuple[dict, int | None, tuple]:
        """Route one change, in order: (prev of each of its channels, its blog if it is a blog's own
        change, the blogs an entry's change goes to). `blog` with a `kind` is a blog's own change;
        with none, an editor's post in it. `filters`: blog -> feeds its readers filter on."""
        last_of, prevs = self.last_of, {}
        if blog is not None and kind:
            if feed_id is not None:
                self._in_blog(prevs, seq, blog, feed_id)
            else:  # the whole blog's: each of its feed channels follows it too
                channel, whole = blog_channel(blog), ("blog", blog, "*")
                prevs[channel], last_of[channel] = last_of.get(channel), seq
                for feed in self.blog_feeds.get(blog, set()) | set(filters.get(blog, ())):
                    filtered = blog_channel(blog, feed)
                    prevs[filtered] = _known_max(last_of.get(filtered), last_of.get(whole))
                last_of[whole] = seq
            if kind == "source.added":
                self.route(blog, feed_id)
            elif kind == "source.removed":
                self.unroute(blog, feed_id)
            elif kind == "blog.ended":
                self.unroute(blog)
            return prevs, blog, ()
        if feed_id is None:  # a post: in its blog only
            blogs = (blog,) if blog is not None else ()
            for blog_id in blogs:
                channel = blog_channel(blog_id)
                prevs[channel], last_of[channel] = last_of.get(channel), seq
            return prevs, None, blogs
        blogs = tuple(self.feed_blogs.get(feed_id, ()))
        feed = feed_channel(feed_id)
        prevs[ALL], prevs[feed] = last_of.get(ALL), last_of.get(feed)
        last_of[ALL] = last_of[feed] = seq
        for blog_id in blogs:
            self._in_blog(prevs, seq, blog_id, feed_id)
        return prevs, None, blogs

    def _in_blog(self, prevs: dict, seq: int, blog_id: int, feed_id: int) -> None:
        last_of = self.last_of
        channel, filtered = blog_channel(blog_id), blog_channel(blog_id, feed_id)
        prevs[channel] = last_of.get(channel)
        prevs[filtered] = _known_max(last_of.get(filtered), last_of.get(("blog", blog_id, "*")))
        last_of[channel] = last_of[filtered] = seq


def channels_of(event, filters) -> list[tuple]:
    """The channels a change goes to (those with readers are looked up; nothing else is)."""
    if event.blog is None:  # an entry's change: the river (not for a post), its feed, its blogs
        channels = [] if event.feed_id is None else [ALL, feed_channel(event.feed_id)]
        for blog_id in event.blogs:
            channels.append(blog_channel(blog_id))
            if event.feed_id is not None:
                channels.append(blog_channel(blog_id, event.feed_id))
        return channels
    if event.feed_id is not None:  # about one source of the blog
        return [blog_channel(event.blog), blog_channel(event.blog, event.feed_id)]
    # The whole blog's (its end): its readers, and those of each of its sources.
    return [
        blog_channel(event.blog),
        *(blog_channel(event.blog, feed) for feed in filters.get(event.blog, ())),
    ]
