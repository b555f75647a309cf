from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from billing.tasks import charge


@require_POST
def charge_invoice(request: HttpRequest, invoice_id: int) -> JsonResponse:
    """Enqueue the charge and answer at once with the job's id."""
    job = charge.delay(invoice_id)
    return JsonResponse({"job_id": job.id}, status=202)
