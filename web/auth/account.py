"""A team member's own page: what they want to hear about."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from shared.models import ArrivalEmails
from web.auth.views import bp
from web.services import Services


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> ResponseReturnValue:
    """ "Email me when a patient arrives": at most one email per clinic every five minutes."""
    session = Services.db()
    chosen = session.get(ArrivalEmails, current_user.id)
    if request.method == "POST":
        wanted = request.form.get("arrival_emails") == "true"
        if wanted and chosen is None:
            session.add(ArrivalEmails(user_id=current_user.id))
        elif not wanted and chosen is not None:
            session.delete(chosen)
        session.commit()
        return redirect(url_for("auth.account", saved=1), 303)
    return render_template(
        "auth/account.html", arrival_emails=chosen is not None, saved="saved" in request.args
    )
