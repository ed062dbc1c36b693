from django.db import migrations

PERMISSIONS = {
    "post": "Can write, edit and delete posts",
    "mark": "Can pin entries and mark key events",
    "moderate": "Can approve and reject held entries",
}


def create_group(apps, schema_editor):
    """The "Editors" group: post, edit, pin, mark and moderate. Blogs and sources stay with staff."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    # Permissions are normally created after migrate; the group needs them now.
    content_type, _ = ContentType.objects.get_or_create(app_label="editors", model="editorial")
    permissions = [
        Permission.objects.get_or_create(content_type=content_type, codename=codename, defaults={"name": name})[0]
        for codename, name in PERMISSIONS.items()
    ]
    group, _ = Group.objects.get_or_create(name="Editors")
    group.permissions.add(*permissions)


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Editors").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("editors", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
